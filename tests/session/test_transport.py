"""One HTTP attempt: aiohttp failures become the SDK's errors, with `request_sent` right.

The transport seam: what the client does with the aiohttp transport (the default) and
with an injected one. Tests of the aiohttp transport itself use what only aiohttp can
give: aioresponses raising aiohttp's exceptions, a closed port, and a scripted loopback
server that drops a real connection or carries an injected session. Everything about
bodies, statuses and timeouts runs against the fake, in-process.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FakeClock,
    Hooks,
    InternalServerError,
    MalformedResponseError,
    RetryEvent,
    UnprocessableEntityError,
)
from cs2cap_account._transport import AiohttpTransport
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import API_KEY, Recorder, Reply, ScriptedServer, canned, closed_port
from .conftest import MakeClient
from .test_retry_policy import KEY_URL


async def test_a_refused_connection_is_not_sent_and_is_retried(
    make_client: MakeClient, clock: FakeClock
) -> None:
    """Nothing listening: `APIConnectionError(request_sent=False)` after every attempt,
    chained to aiohttp's error, with no key in the message.
    """
    client = make_client(base_url=f"http://127.0.0.1:{closed_port()}/v1")

    with pytest.raises(APIConnectionError) as caught:
        await client.get_key()

    error = caught.value
    assert error.request_sent is False
    assert not isinstance(error, APITimeoutError)
    assert "could not connect" in str(error)
    assert API_KEY not in str(error)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    assert len(clock.sleeps) == 2


async def test_a_dropped_connection_was_sent(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    """The server closes the connection without answering: `request_sent=True`."""
    server.default = Reply(drop=True)

    with pytest.raises(APIConnectionError) as caught:
        await make_client(base_url=server.base_url, max_retries=0).get_key()

    assert caught.value.request_sent is True
    assert "connection failed" in str(caught.value)


async def test_a_slow_answer_times_out_per_attempt_and_the_retry_succeeds(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`timeout=0.05` against a server taking 0.3 s: the attempt fails with
    `APITimeoutError(request_sent=True)`, the retry gets the fast answer.
    """
    fake.faults.delay("get_key", 0.3)  # on the virtual clock
    events: list[RetryEvent] = []
    client = make_fake_client(timeout=0.05, hooks=Hooks(on_retry=[events.append]))

    await client.get_key()

    assert len(wire.seen) == 2
    assert isinstance(events[0].error, APITimeoutError)
    assert events[0].error.request_sent is True
    assert "no response within 0.05 s" in str(events[0].error)


async def test_with_options_timeout_applies_to_calls_through_the_copy(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient
) -> None:
    """`with_options(timeout=0.05)` times out where the original client (30 s) waits."""
    fake.faults.delay("get_key", 0.2, times=2)  # on the virtual clock
    client = make_fake_client()

    with pytest.raises(APITimeoutError):
        await client.with_options(timeout=0.05, max_retries=0).get_key()
    info = await client.get_key()

    assert info.is_active
    assert len(wire.seen) == 2


@pytest.mark.parametrize(
    ("exception", "error", "sent"),
    [
        (aiohttp.ConnectionTimeoutError("slow connect"), APITimeoutError, False),
        (aiohttp.SocketTimeoutError("slow read"), APITimeoutError, True),
        (asyncio.TimeoutError(), APITimeoutError, True),
        (aiohttp.ServerDisconnectedError(), APIConnectionError, True),
        (aiohttp.ClientPayloadError("truncated"), APIConnectionError, True),
        (OSError(32, "Broken pipe"), APIConnectionError, True),
    ],
)
async def test_aiohttp_failures_are_translated(
    mocked: aioresponses,
    make_client: MakeClient,
    exception: Exception,
    error: type[APIConnectionError],
    sent: bool,
) -> None:
    """Each aiohttp/OS failure becomes the SDK error with the right `request_sent`,
    chained with `from`.
    """
    mocked.get(KEY_URL, exception=exception)

    with pytest.raises(error) as caught:
        await make_client(max_retries=0).get_key()

    assert type(caught.value) is error
    assert caught.value.request_sent is sent
    assert caught.value.__cause__ is exception


async def test_a_key_in_an_aiohttp_message_is_redacted(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """Text from aiohttp is scrubbed of anything shaped like a key."""
    mocked.get(KEY_URL, exception=aiohttp.ClientOSError(1, f"weird failure near {API_KEY}"))

    with pytest.raises(APIConnectionError) as caught:
        await make_client(max_retries=0).get_key()

    assert API_KEY not in str(caught.value)
    assert "sk_live_root" in str(caught.value)


async def test_the_query_string_is_left_out_of_error_messages(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """Error messages name the method and URL path, never the query string."""
    mocked.get(re.compile(r".*/account/sub-keys\?.*"), exception=aiohttp.ServerDisconnectedError())

    with pytest.raises(APIConnectionError) as caught:
        await make_client(max_retries=0).sub_keys.list(limit=7, offset=3)

    assert "GET https://api.test/v1/account/sub-keys:" in str(caught.value)
    assert "limit" not in str(caught.value)


async def test_a_non_json_success_body_is_malformed(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A 200 with an HTML body raises `MalformedResponseError` naming the content type."""
    fake.faults.raw_body("get_key", b"<html>hello</html>", status=200, times=100)

    with pytest.raises(MalformedResponseError) as caught:
        await make_fake_client().get_key()

    assert caught.value.status_code == 200
    assert caught.value.content_type == "text/html"
    assert "text/html" in str(caught.value)
    assert fake.requests["get_key"] == 1  # not retried


async def test_an_html_502_is_an_internal_server_error_and_retried(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A proxy's HTML 502 page is still a typed `InternalServerError` (code None), retried."""
    fake.faults.html_502("get_key", times=3)

    with pytest.raises(InternalServerError) as caught:
        await make_fake_client().get_key()

    assert caught.value.status_code == 502
    assert caught.value.code is None
    assert caught.value.detail is None
    assert fake.requests["get_key"] == 3


@pytest.mark.parametrize(
    "body",
    [[1, 2, 3], {"code": 5, "detail": 7}, "just a string", {"code": None}],
    ids=["list", "wrong-types", "string", "null-code"],
)
async def test_error_bodies_of_the_wrong_shape_still_give_a_typed_error(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, body: Any
) -> None:
    """An error body that is JSON but not `{"code", "detail"}` gives code/detail None."""
    fake.faults.raw_body("get_key", canned(body), status=400, content_type="application/json")

    with pytest.raises(APIStatusError) as caught:
        await make_fake_client().get_key()

    assert caught.value.status_code == 400
    assert caught.value.code is None
    assert caught.value.detail is None


async def test_a_422_keeps_the_well_formed_validation_items(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A 422's `detail` list becomes `ValidationIssue`s; malformed items are skipped."""
    detail = [
        {"type": "string_too_long", "loc": ["body", "name"], "msg": "too long"},
        {"nonsense": True},
    ]
    body = canned({"code": "VALIDATION_ERROR", "detail": detail})
    fake.faults.raw_body("update_sub_key", body, status=422, content_type="application/json")

    with pytest.raises(UnprocessableEntityError) as caught:
        await make_fake_client().sub_keys.update("abc", name="x" * 200)

    assert caught.value.code == "VALIDATION_ERROR"
    assert isinstance(caught.value.detail, tuple)
    assert [issue.loc for issue in caught.value.detail] == [("body", "name")]


async def test_a_closed_client_refuses_requests(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """After `aclose()` (twice is fine) a request raises `RuntimeError`, sending nothing."""
    client = make_fake_client()
    await client.aclose()
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.get_key()

    assert client.closed
    assert sum(fake.requests.values()) == 0


async def test_an_injected_transport_carries_the_requests_and_closes_with_the_client(
    fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """`transport=` replaces aiohttp; the client closes it (a copy's `aclose()` does not)."""
    transport = fake.transport(clock=clock)
    client = AccountClient(fake.root_key, transport=transport, clock=clock)
    copy = client.with_options(timeout=5)

    assert (await copy.get_key()).id == fake.root_key_id
    await copy.aclose()
    assert not transport.closed
    await client.aclose()

    assert transport.closed
    assert client.closed
    assert fake.requests["get_key"] == 1


async def test_session_and_transport_together_are_refused(fake: FakeCS2CapAPI) -> None:
    """An aiohttp session only feeds the default transport: passing both is a TypeError,
    and so is a transport that is not one.
    """
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TypeError, match="not both"):
            AccountClient(fake.root_key, session=session, transport=fake.transport())
        with pytest.raises(TypeError, match="transport must provide"):
            AccountClient(fake.root_key, transport=session)  # type: ignore[arg-type]


async def test_an_injected_session_is_used_and_never_closed(
    server: ScriptedServer, clock: FakeClock
) -> None:
    """A caller's aiohttp session carries the requests and stays open after `aclose()`."""
    async with aiohttp.ClientSession() as session:
        client = AccountClient(API_KEY, base_url=server.base_url, session=session, clock=clock)
        await client.get_key()
        await client.aclose()

        assert not session.closed
        assert client.closed
        assert len(server.seen) == 1


async def test_the_client_creates_and_closes_its_own_session(
    server: ScriptedServer, clock: FakeClock
) -> None:
    """Without an injected session, one is created on first use and closed by `aclose()`;
    a `with_options` copy's `aclose()` leaves it open.
    """
    client = AccountClient(API_KEY, base_url=server.base_url, clock=clock)
    copy = client.with_options(timeout=5)
    await copy.get_key()
    await copy.aclose()
    await client.get_key()

    transport = client._session.shared.transport
    assert isinstance(transport, AiohttpTransport)
    session = transport._session
    assert session is not None
    assert not session.closed
    await client.aclose()
    assert session.closed


async def test_aclose_before_any_request_is_fine() -> None:
    """Closing a transport that never created a session does nothing and does not fail."""
    transport = AiohttpTransport()
    await transport.aclose()

    assert transport.closed


def test_the_timeout_cache_stays_small() -> None:
    """Many distinct per-attempt timeouts (as a deadline produces) do not pile up."""
    transport = AiohttpTransport()
    timeouts = [transport._timeout(0.1 * i) for i in range(1, 100)]

    assert len(transport._timeouts) <= 8
    assert transport._timeout(0.1 * 99) is timeouts[-1]
    assert timeouts[0].total == pytest.approx(0.1)
