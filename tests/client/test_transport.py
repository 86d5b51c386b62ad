"""aiohttp failures become the SDK's connection errors, chained, marked sent or not."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APITimeoutError,
    CS2CapError,
    FakeClock,
    MalformedResponseError,
    SubKeyOutcomeUnknownError,
)

from ._payloads import (
    BASE_URL,
    ROOT_KEY,
    calls,
    created,
    key_info,
    only_call,
    refused,
    total_calls,
    url,
)


def no_retry(clock: FakeClock, base_url: str = BASE_URL) -> AccountClient:
    """A client that makes exactly one attempt per call."""
    return AccountClient(
        ROOT_KEY, base_url=base_url, clock=clock, max_retries=0, requests_per_minute=0
    )


@pytest.mark.parametrize(
    ("raised", "expected", "sent"),
    [
        (asyncio.TimeoutError(), APITimeoutError, True),
        (aiohttp.ServerTimeoutError("read timed out"), APITimeoutError, True),
        (aiohttp.ConnectionTimeoutError("connect timed out"), APITimeoutError, False),
        (aiohttp.ServerDisconnectedError(), APIConnectionError, True),
        (aiohttp.ClientPayloadError("truncated"), APIConnectionError, True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), APIConnectionError, True),
        (ConnectionResetError(104, "reset"), APIConnectionError, True),
    ],
)
async def test_aiohttp_errors_are_translated_and_chained(
    mock: aioresponses,
    clock: FakeClock,
    raised: Exception,
    expected: type[APIConnectionError],
    sent: bool,
) -> None:
    """Each aiohttp/OS failure maps to its SDK error with `__cause__` set to the original."""
    mock.get(url("/account/key"), exception=raised)

    async with no_retry(clock) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    err = caught.value
    assert type(err) is expected
    assert err.__cause__ is raised
    assert err.request_sent is sent
    assert str(err).startswith(f"GET {BASE_URL}/account/key")


async def test_connector_error_means_not_sent(mock: aioresponses, clock: FakeClock) -> None:
    """A ClientConnectorError (refused, DNS) proves nothing reached the server."""
    raised = refused()
    mock.get(url("/account/key"), exception=raised)

    async with no_retry(clock) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    assert type(caught.value) is APIConnectionError
    assert caught.value.request_sent is False
    assert caught.value.__cause__ is raised
    assert "could not connect" in str(caught.value)


def unused_port() -> int:
    """A local TCP port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_real_connection_refused(clock: FakeClock) -> None:
    """A real refused TCP connection: APIConnectionError, not sent, chained to aiohttp's error."""
    async with no_retry(clock, f"http://127.0.0.1:{unused_port()}/v1") as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    assert type(caught.value) is APIConnectionError
    assert caught.value.request_sent is False
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def tcp_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start raw TCP servers on loopback; yields a function returning a base URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> None:
    """Consume one request head."""
    await reader.readuntil(b"\r\n\r\n")


async def test_real_server_disconnect(
    clock: FakeClock, tcp_server: Callable[[Handler], Awaitable[str]]
) -> None:
    """A server that reads the request then hangs up: APIConnectionError with request_sent."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    base = await tcp_server(hang_up)
    async with no_retry(clock, base) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    assert type(caught.value) is APIConnectionError
    assert caught.value.request_sent is True
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)


async def test_real_truncated_body(
    clock: FakeClock, tcp_server: Callable[[Handler], Awaitable[str]]
) -> None:
    """A body cut short of its Content-Length is a connection error, not a parse error."""

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'Content-Length: 500\r\n\r\n{"key": {"id": '
        )
        await writer.drain()
        writer.close()

    base = await tcp_server(cut_short)
    async with no_retry(clock, base) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    assert caught.value.request_sent is True
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_real_server_round_trip(
    clock: FakeClock, tcp_server: Callable[[Handler], Awaitable[str]]
) -> None:
    """Against a real socket, the request line and headers are what the API expects."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        body = b'{"key": {"id": "k", "key_prefix": "sk_live_root", "is_active": true, '
        body += b'"created_at": "2026-03-02T10:30:00Z"}}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
        writer.close()

    base = await tcp_server(answer)
    async with no_retry(clock, base) as client:
        info = await client.get_key()

    assert info.id == "k"
    head = seen[0].decode().lower()
    assert head.startswith("get /v1/account/key http/1.1\r\n")
    assert f"authorization: bearer {ROOT_KEY.lower()}\r\n" in head
    assert "accept: application/json\r\n" in head
    assert "user-agent: cs2cap-account/" in head
    assert "cookie" not in head


async def test_connection_errors_are_retried_for_get(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A GET that failed in transit is retried, with a virtual backoff between attempts."""
    mock.get(url("/account/key"), exception=aiohttp.ServerDisconnectedError())
    mock.get(url("/account/key"), exception=asyncio.TimeoutError())
    mock.get(url("/account/key"), payload={"key": key_info()})

    info = await client.get_key()

    assert info.is_active
    assert total_calls(mock) == 3
    assert len(clock.sleeps) == 2


async def test_post_not_sent_is_retried(mock: aioresponses, client: AccountClient) -> None:
    """A create whose connection never opened did nothing on the server: it is retried."""
    mock.post(url("/account/sub-keys"), exception=refused())
    mock.post(url("/account/sub-keys"), status=201, payload=created())

    made = await client.sub_keys.create("bot")

    assert made.key_info.name == "bot"
    assert total_calls(mock) == 2


@pytest.mark.parametrize(
    "raised",
    [aiohttp.ServerDisconnectedError(), asyncio.TimeoutError()],
)
async def test_post_maybe_sent_is_not_retried(
    mock: aioresponses, client: AccountClient, raised: Exception
) -> None:
    """A create that may have reached the server raises SubKeyOutcomeUnknownError, once."""
    mock.post(url("/account/sub-keys"), exception=raised, repeat=True)

    with pytest.raises(SubKeyOutcomeUnknownError) as caught:
        await client.sub_keys.create("bot")

    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert caught.value.__cause__.__cause__ is raised
    assert total_calls(mock) == 1


async def test_timeout_is_passed_to_aiohttp(mock: aioresponses, clock: FakeClock) -> None:
    """Each attempt is bounded by `timeout` seconds, via aiohttp's ClientTimeout."""
    mock.get(url("/account/key"), payload={"key": key_info()}, repeat=True)
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock, timeout=12.5) as client:
        await client.get_key()
        await client.with_options(timeout=3.0).get_key()

    first, second = (c.kwargs["timeout"] for c in calls(mock, "GET", "/account/key"))
    assert first == aiohttp.ClientTimeout(total=12.5)
    assert second == aiohttp.ClientTimeout(total=3.0)


async def test_redirects_are_not_followed(mock: aioresponses, client: AccountClient) -> None:
    """A 302 elsewhere is not followed (the key must not travel to another host)."""
    mock.get(
        url("/account/key"),
        status=302,
        headers={"Location": "https://evil.example/steal"},
        body=b"",
    )
    mock.get("https://evil.example/steal", payload={"key": key_info()})

    with pytest.raises(CS2CapError) as caught:
        await client.get_key()

    assert isinstance(caught.value, MalformedResponseError)
    assert only_call(mock, "GET", "/account/key")
    assert total_calls(mock) == 1
