"""No plaintext key or token in the frame locals an error reporter captures.

Reporters such as Sentry capture the locals of every frame of an exception's traceback,
and of every exception in its cause/context chain. Each test here makes the SDK fail
one way, over a real socket with the default aiohttp transport (whose frames are the
ones at stake), then looks at the exception the way such a reporter does: formatted by
`traceback.TracebackException(capture_locals=True)` (which calls `repr()` on every local,
and itself fails if one raises), and walked frame by frame (`captured_locals`, which also
follows `OutcomeUnknownError.cause`). No credential the fake issued, nor the once-shown
key of a mangled answer, may appear.
"""

from __future__ import annotations

import json
import socket
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from reliability._hygiene import KeyAudit, captured_locals, leaked_keys

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    FakeClock,
    Hooks,
    InternalServerError,
    KeyLostError,
    KeyRotator,
    MalformedResponseError,
    MemoryKeyStore,
    ReissueOutcomeUnknownError,
    RequestEvent,
    RotationError,
    SecretKey,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account._transport import AiohttpTransport, Response
from cs2cap_account.testing import FakeCS2CapAPI

# The once-shown key of a mangled answer the fake never issued (its handler did not run).
UNISSUED_KEY = "sk_live_root_" + "U" * 28 + "unis"


def reporter_view(exc: BaseException) -> str:
    """Everything a locals-capturing reporter would ship for `exc`: the formatted
    traceback with locals (every frame, the test's too) and each frame's locals.
    """
    formatted = "".join(
        traceback.TracebackException.from_exception(exc, capture_locals=True).format()
    )
    walked = "\n".join(f"{where}: {text}" for where, text in captured_locals(exc))
    return formatted + "\n" + walked


def assert_no_secret_in_locals(
    exc: BaseException, api: FakeCS2CapAPI, *, extra: tuple[str, ...] = ()
) -> None:
    """No credential `api` issued (nor any of `extra`) in what a reporter captures of `exc`,
    and the check looked at something: the chain had frames with locals.
    """
    assert captured_locals(exc), "no frame locals to look at"
    secrets: list[SecretKey | str] = [*api.issued_secrets(), *extra]
    assert leaked_keys(reporter_view(exc), secrets) == []


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Mangling:
    """The aiohttp transport, with each answer to `path` rewritten by `mangle` (which gets
    the body the server sent). Notes whether a rewritten body still held a key.
    """

    def __init__(self, path: str, mangle: Callable[[bytes], bytes]) -> None:
        self.inner = AiohttpTransport()
        self.path = path
        self.mangle = mangle
        self.bodies: list[bytes] = []

    @property
    def closed(self) -> bool:
        """Whether the inner transport is closed."""
        return self.inner.closed

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Send through aiohttp; rewrite the body of an answer to `path`."""
        resp = await self.inner.send(
            method, url, headers=headers, params=params, body=body, timeout=timeout
        )
        if method == "POST" and url.endswith(self.path):
            mangled = self.mangle(resp.body)
            self.bodies.append(mangled)
            return Response(resp.status, resp.headers, mangled, resp.content_type)
        return resp

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()

    def kept_a_key(self, api: FakeCS2CapAPI) -> bool:
        """Whether a rewritten body held a credential `api` issued (the point of the test)."""
        return any(
            leaked_keys(body.decode(errors="replace"), api.issued_secrets()) for body in self.bodies
        )


def without_id(body: bytes) -> bytes:
    """The answer with its `id` taken out: the key is there, but cannot be salvaged."""
    data = json.loads(body)
    del data["id"]
    return json.dumps(data).encode()


def first_half(body: bytes) -> bytes:
    """The answer cut off mid-JSON (the key comes first, so it is in the half kept)."""
    return body[: len(body) // 2]


@pytest.fixture
async def client(tcp_fake: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[AccountClient]:
    """A root-key client of the fake over TCP, with no retries."""
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, max_retries=0
    ) as made:
        yield made


async def test_a_refused_connection(tcp_fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """Nothing listening: aiohttp's `ClientConnectorError` is chained without its frames."""
    async with AccountClient(
        tcp_fake.root_key, base_url=f"http://127.0.0.1:{closed_port()}/v1", clock=clock
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_key()

    assert caught.value.__cause__ is not None
    assert caught.value.__cause__.__traceback__ is None
    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_dropped_connection(tcp_fake: FakeCS2CapAPI, client: AccountClient) -> None:
    """The server hangs up (aiohttp's `ServerDisconnectedError`, raised in its frames that
    hold the request headers): nothing of those frames is reachable.
    """
    tcp_fake.faults.drop("get_key", times=2)  # aiohttp resends a dropped GET once

    with pytest.raises(APIConnectionError) as caught:
        await client.get_key()

    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_500(tcp_fake: FakeCS2CapAPI, client: AccountClient) -> None:
    """A 500 on an ordinary call: the session's and the client's frames hold headers
    whose repr redacts the key.
    """
    tcp_fake.faults.fail("get_key", status=500, code="INTERNAL_SERVER_ERROR")

    with pytest.raises(InternalServerError) as caught:
        await client.get_key()

    assert "BearerHeaders" in reporter_view(caught.value)  # the headers were captured
    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_500_with_a_session_token(tcp_fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """The same with a session JWT as the credential: the token is not in the locals."""
    tcp_fake.faults.fail("get_key", status=500, code="INTERNAL_SERVER_ERROR")
    async with AccountClient(
        session_token=tcp_fake.session_token, base_url=tcp_fake.base_url, clock=clock, max_retries=0
    ) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.get_key()

    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_401(tcp_fake: FakeCS2CapAPI, client: AccountClient, clock: FakeClock) -> None:
    """A revoked key answered 401, and a key passed to `get_key(key=...)` as a str."""
    revoked = tcp_fake.root_key
    async with AccountClient(revoked, base_url=tcp_fake.base_url, clock=clock) as other:
        await other.reissue_key()

    with pytest.raises(AuthenticationError) as on_call:
        await client.get_key()
    with pytest.raises(AuthenticationError) as with_key:
        await client.get_key(key=revoked.reveal())

    assert_no_secret_in_locals(on_call.value, tcp_fake)
    assert_no_secret_in_locals(with_key.value, tcp_fake)


async def test_a_timeout(tcp_fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """No answer in time: aiohttp's timeout error and the cancellation behind it are
    chained without their frames.
    """
    tcp_fake.faults.delay("get_key", 0.5)  # for real over TCP; the client gives up first
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, timeout=0.05, max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.get_key()

    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_lost_reissue_response(tcp_fake: FakeCS2CapAPI, client: AccountClient) -> None:
    """The reissue happened and the connection dropped: `KeyLostError`, chained to the
    connection error, with neither the old key nor any other in its frames.
    """
    tcp_fake.faults.drop_after_commit("reissue_key")

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert_no_secret_in_locals(caught.value, tcp_fake)


@pytest.mark.parametrize("mangle", [without_id, first_half], ids=["no id", "truncated"])
async def test_a_mangled_reissue_answer_that_held_the_new_key(
    tcp_fake: FakeCS2CapAPI, clock: FakeClock, mangle: Callable[[bytes], bytes]
) -> None:
    """The reissue happened and its answer held the new key, but without its id (or cut
    off mid-JSON): `KeyLostError` from `MalformedResponseError`. The parser's frames held
    the body (`data`, `value`, `s`); none of them is reachable from the error.
    """
    transport = Mangling("/account/key/reissue", mangle)
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, transport=transport
    ) as client:
        with pytest.raises(KeyLostError) as caught:
            await client.reissue_key()

    assert transport.kept_a_key(tcp_fake)
    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_an_unusable_reissue_answer_then_no_probe(
    tcp_fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """A 200 answer with a key but no id, then a probe that gets no answer: the outcome
    is unknown, and the key of that answer is nowhere in the error's frames.
    """
    tcp_fake.faults.raw_body(
        "reissue_key",
        json.dumps({"key": UNISSUED_KEY, "message": "stored?"}).encode(),
        status=200,
        content_type="application/json",
    )

    def probe_fails_after_the_post(event: RequestEvent) -> None:
        if event.method == "POST":
            tcp_fake.faults.fail("get_key", status=503, times=5)

    hooks = Hooks(on_request=[probe_fails_after_the_post])
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, hooks=hooks, max_retries=0
    ) as client:
        with pytest.raises(ReissueOutcomeUnknownError) as caught:
            await client.reissue_key()

    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert_no_secret_in_locals(caught.value, tcp_fake, extra=(UNISSUED_KEY,))


async def test_a_child_key_create_that_may_have_happened(
    tcp_fake: FakeCS2CapAPI, client: AccountClient
) -> None:
    """`SubKeyOutcomeUnknownError` after a dropped connection: its cause came through
    aiohttp, whose frames held the root key.
    """
    tcp_fake.faults.drop_after_commit("create_sub_key")

    with pytest.raises(SubKeyOutcomeUnknownError) as caught:
        await client.sub_keys.create("bot")

    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_child_key_answer_cut_off(tcp_fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """`SubKeyOutcomeUnknownError` after a cut-off 201 holding the new child key."""
    transport = Mangling("/account/sub-keys", first_half)
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, transport=transport
    ) as client:
        with pytest.raises(SubKeyOutcomeUnknownError) as caught:
            await client.sub_keys.create("bot")

    assert transport.kept_a_key(tcp_fake)
    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_child_key_reissue_answer_cut_off(
    tcp_fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """`sub_keys.reissue()` whose answer, holding the new child key, is cut off: the
    probe finds the old child gone, so `SubKeyLostError`, chained to the parse failure.
    """
    made = tcp_fake.add_child_key("bot")
    transport = Mangling("/reissue", first_half)
    async with AccountClient(
        tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock, transport=transport
    ) as client:
        with pytest.raises(SubKeyLostError) as caught:
            await client.sub_keys.reissue(made.key_id)
    assert isinstance(caught.value.__cause__, MalformedResponseError)

    assert transport.kept_a_key(tcp_fake)
    assert_no_secret_in_locals(caught.value, tcp_fake)


async def test_a_rotation_that_lost_the_key_without_a_recovery_token(
    tcp_fake: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The rotator's `RotationError`, caused by `KeyLostError`: through the rotator's
    frames and the client's, no key.
    """
    tcp_fake.faults.drop_after_commit("reissue_key")
    rotator = KeyRotator(client, store=MemoryKeyStore())

    with pytest.raises(RotationError) as caught:
        await rotator.rotate_now()

    assert isinstance(caught.value.__cause__, KeyLostError)
    assert_no_secret_in_locals(caught.value, tcp_fake)


def test_a_client_that_fails_to_start_can_be_formatted_with_its_locals() -> None:
    """`AccountClient()` refusing its arguments: the half-built client in `__init__`'s
    locals has a repr, and the key given is not among the locals.
    """
    api = FakeCS2CapAPI()

    with pytest.raises(ValueError, match="base_url") as caught:
        AccountClient(api.root_key.reveal(), base_url="ftp://example.com")

    assert_no_secret_in_locals(caught.value, api)


# A function as if it were the SDK's, that keeps the plaintext in a local when it raises.
_CARELESS = """
def careless(token):
    header = "Bearer " + token.reveal()
    raise ValueError(len(header))
"""


def test_the_check_finds_a_key_in_a_local() -> None:
    """The check is not vacuous: a frame of the SDK that keeps the plaintext in a local
    is found in the formatted traceback, by the frame walk and by the suite-wide audit.
    """
    api = FakeCS2CapAPI()
    namespace: dict[str, Any] = {"__name__": "cs2cap_account._careless"}
    exec(compile(_CARELESS, "cs2cap_account/_careless.py", "exec"), namespace)  # noqa: S102
    try:
        namespace["careless"](api.root_key)
    except ValueError as exc:
        error = exc  # not through pytest.raises: the suite-wide audit would fail this test

    assert leaked_keys(reporter_view(error), [api.root_key]) == [api.root_key.redacted]
    walked = "\n".join(text for _, text in captured_locals(error))
    assert leaked_keys(walked, [api.root_key]) == [api.root_key.redacted]
    leaks = KeyAudit([api]).check_exception(error, "a test")
    assert [leak.key for leak in leaks] == [api.root_key.redacted]
    assert "local 'header' of careless()" in leaks[0].where
    error.__traceback__ = None
