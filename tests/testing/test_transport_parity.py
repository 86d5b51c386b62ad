"""The in-process transport and the TCP fake give the same outcome for every fault kind.

Each scenario scripts one fault on a fresh fake, makes one SDK call with retries off,
and records what the client saw (the result or the error type, its status, whether the
request may have been sent) and what the fake counted. It runs once over TCP (aiohttp,
a real socket) and once through `FakeCS2CapAPI.transport()`, and both must agree with
each other and with the expected outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import attrs
import pytest
from aiohttp import web

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    CS2CapError,
    FakeClock,
    RateLimitError,
    SubKeyLostError,
)
from cs2cap_account._transport import AiohttpTransport, Transport
from cs2cap_account.testing import HTML_502_PAGE, FakeCS2CapAPI, InProcessTransport
from cs2cap_account.testing._transport import InProcessConnection

Path = Literal["tcp", "in-process"]
# Over TCP the fake's delay and the client's timeout are real seconds: keep them short.
# In-process they run on a FakeClock and cost nothing.
TIMEOUT = 0.02
LONG_DELAY = 0.1


@attrs.frozen
class Outcome:
    """What one call came to, as far as parity goes."""

    result: str
    status: int | None = None
    code: str | None = None
    request_sent: bool | None = None
    retry_after: float | None = None
    requests: tuple[tuple[str, int], ...] = ()
    injected: tuple[tuple[str, int], ...] = ()
    issued: int = 0


Call = Callable[[AccountClient, FakeCS2CapAPI], Awaitable[object]]


@attrs.frozen
class Scenario:
    """A fault to script, and the call that meets it."""

    arrange: Callable[[FakeCS2CapAPI], object]
    call: Call
    expected: str
    timeout: float = 5.0


def _child(api: FakeCS2CapAPI) -> str:
    return api.add_child_key("bot").key_id


async def _get_key(client: AccountClient, api: FakeCS2CapAPI) -> object:
    return await client.get_key()


async def _reissue_child(client: AccountClient, api: FakeCS2CapAPI) -> object:
    return await client.sub_keys.reissue(_child(api))


async def _update_child(client: AccountClient, api: FakeCS2CapAPI) -> object:
    return await client.sub_keys.update(_child(api), name="renamed")


async def _delete_child(client: AccountClient, api: FakeCS2CapAPI) -> object:
    return await client.sub_keys.delete(_child(api))


SCENARIOS: dict[str, Scenario] = {
    "fail": Scenario(
        lambda api: api.faults.fail("get_key", status=503, headers={"X-A": "1"}),
        _get_key,
        "InternalServerError",
    ),
    "fail-404": Scenario(
        lambda api: api.faults.fail("get_key", status=404, code="NOT_FOUND"),
        _get_key,
        "NotFoundError",
    ),
    "rate-limited": Scenario(
        lambda api: api.faults.rate_limited("get_key", retry_after=7), _get_key, "RateLimitError"
    ),
    "monthly-quota": Scenario(
        lambda api: api.faults.monthly_quota_exceeded("get_key"), _get_key, "RateLimitError"
    ),
    "short-delay": Scenario(lambda api: api.faults.delay("get_key", 0.001), _get_key, "KeyInfo"),
    "long-delay": Scenario(
        lambda api: api.faults.delay("get_key", LONG_DELAY),
        _get_key,
        "APITimeoutError",
        timeout=TIMEOUT,
    ),
    "drop-get-once": Scenario(lambda api: api.faults.drop("get_key"), _get_key, "KeyInfo"),
    "drop-get-twice": Scenario(
        lambda api: api.faults.drop("get_key", times=2), _get_key, "APIConnectionError"
    ),
    "drop-post": Scenario(
        lambda api: api.faults.drop("reissue_sub_key"), _reissue_child, "APIConnectionError"
    ),
    "drop-after-commit-patch": Scenario(
        lambda api: api.faults.drop_after_commit("update_sub_key"),
        _update_child,
        "APIConnectionError",
    ),
    "drop-after-commit-delete": Scenario(
        lambda api: api.faults.drop_after_commit("delete_sub_key"), _delete_child, "NotFoundError"
    ),
    "html-502": Scenario(
        lambda api: api.faults.html_502("get_key"), _get_key, "InternalServerError"
    ),
    "raw-body": Scenario(
        lambda api: api.faults.raw_body("get_key", b"plain", status=200, content_type="text/plain"),
        _get_key,
        "MalformedResponseError",
    ),
    "truncated-json": Scenario(
        lambda api: api.faults.truncated_json("get_key"), _get_key, "MalformedResponseError"
    ),
    "no-fault": Scenario(lambda api: None, _get_key, "KeyInfo"),
}


async def _outcome(path: Path, scenario: Scenario, clock: FakeClock) -> Outcome:
    """Run `scenario` on a fresh fake over `path`."""
    api = FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now)
    transport: Transport
    if path == "tcp":
        await api.start()
        transport, base_url = AiohttpTransport(), api.base_url
    else:
        transport, base_url = api.transport(clock=clock), "https://fake.test/v1"
    try:
        async with AccountClient(
            api.root_key,
            base_url=base_url,
            transport=transport,
            clock=clock,
            max_retries=0,
            timeout=scenario.timeout,
        ) as client:
            scenario.arrange(api)
            return _describe(api, await _result(scenario.call(client, api)))
    finally:
        await api.close()


async def _result(call: Awaitable[object]) -> object:
    try:
        return await call
    except CS2CapError as exc:
        return exc


def _describe(api: FakeCS2CapAPI, result: object) -> Outcome:
    fields: dict[str, Any] = {"result": type(result).__name__}
    if isinstance(result, APIStatusError):
        fields |= {"status": result.status_code, "code": result.code}
    if isinstance(result, RateLimitError):
        fields["retry_after"] = result.retry_after
    if isinstance(result, APIConnectionError):
        fields["request_sent"] = result.request_sent
    return Outcome(
        **fields,
        requests=tuple(sorted(api.requests.items())),
        injected=tuple(sorted(api.faults.injected.items())),
        issued=len(api.issued_secrets()),
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_fault_gives_the_same_outcome_over_tcp_and_in_process(
    name: str, clock: FakeClock
) -> None:
    """Same fault, same call: the same result or error (type, status, code, `request_sent`,
    `Retry-After`), and the fake counted the same requests and faults either way.
    """
    scenario = SCENARIOS[name]
    over_tcp = await _outcome("tcp", scenario, clock)
    in_process = await _outcome("in-process", scenario, FakeClock())
    assert over_tcp == in_process
    assert in_process.result == scenario.expected


async def test_a_dropped_post_was_sent_as_far_as_the_client_can_tell(clock: FakeClock) -> None:
    """A connection closed before any answer leaves `request_sent=True` on both paths:
    the client cannot know the handler never ran.
    """
    for path, use in (("tcp", clock), ("in-process", FakeClock())):
        outcome = await _outcome(path, SCENARIOS["drop-post"], use)  # type: ignore[arg-type]
        assert outcome.request_sent is True
        assert dict(outcome.injected) == {"drop": 1}


async def test_chaos_gives_the_same_sequence_over_tcp_and_in_process(clock: FakeClock) -> None:
    """Seeded chaos (every fault kind but delay) hits the same requests the same way on
    both paths, drops resent by the client included.
    """
    sequences = []
    for path in ("tcp", "in-process"):
        api = FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now, rate_limits=False)
        if path == "tcp":
            await api.start()
            transport: Transport = AiohttpTransport()
            base_url = api.base_url
        else:
            transport, base_url = api.transport(clock=clock), "https://fake.test/v1"
        api.faults.chaos(
            seed=11, error=0.2, rate_limit=0.1, drop=0.1, drop_after_commit=0.1, malformed=0.1
        )
        async with AccountClient(
            api.root_key, base_url=base_url, transport=transport, clock=clock, max_retries=0
        ) as client:
            seen = [type(await _result(client.get_key())).__name__ for _ in range(40)]
        sequences.append((seen, dict(api.faults.injected), api.requests["get_key"]))
        await api.close()
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0][0])) >= 4  # the chaos really varied the outcomes


async def test_a_delay_past_the_timeout_still_runs_the_handler_later(clock: FakeClock) -> None:
    """As over TCP, a client that gave up does not stop the fake: the late reissue lands,
    on the transport's virtual clock, without waiting for real.
    """
    api = FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now)
    api.faults.delay("reissue_sub_key", 30.0)
    key_id = _child(api)
    async with AccountClient(
        api.root_key, transport=api.transport(clock=clock), clock=clock, timeout=5.0
    ) as client:
        with pytest.raises(SubKeyLostError) as caught:
            await client.sub_keys.reissue(key_id)
        timed_out = caught.value.__cause__
        assert isinstance(timed_out, APIConnectionError)
        assert type(timed_out).__name__ == "APITimeoutError"
        assert timed_out.request_sent
        assert clock.sleeps[:1] == [5.0]
        for _ in range(3):
            await clock.sleep(0)
        assert not api.key_info(key_id)["is_active"]  # reissued: the old child is revoked
    assert sum(clock.sleeps) == pytest.approx(30.0)


async def test_the_in_process_transport_refuses_requests_once_closed() -> None:
    """Closing the client closes the transport it was given; the fake stays usable."""
    api = FakeCS2CapAPI()
    transport = api.transport()
    assert isinstance(transport, InProcessTransport)
    assert isinstance(transport, Transport)
    async with AccountClient(api.root_key, transport=transport) as client:
        assert (await client.get_key()).id == api.root_key_id
    assert transport.closed and client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_key()
    async with AccountClient(api.root_key, transport=api.transport()) as again:
        assert (await again.get_key()).is_active


async def test_unknown_paths_and_methods_answer_like_the_server() -> None:
    """The router's 404 and 405 come through the fake's JSON middleware in-process too."""
    api = FakeCS2CapAPI()
    await api.start()
    try:
        for transport, base in (
            (AiohttpTransport(), api.base_url),
            (api.transport(), "https://fake.test/v1"),
        ):
            headers = {"Authorization": f"Bearer {api.root_key.reveal()}"}
            missing = await transport.send("GET", base + "/nope", headers=headers, timeout=5)
            wrong = await transport.send("PUT", base + "/account/key", headers=headers, timeout=5)
            await transport.aclose()
            assert (missing.status, missing.content_type) == (404, "application/json")
            assert b'"code":"NOT_FOUND"' in missing.body
            assert wrong.status == 405
            assert "GET" in wrong.headers["allow"]
            assert wrong.headers["x-ratelimit-tier"] == "quant"  # case-insensitive
    finally:
        await api.close()


async def test_html_502_reaches_the_client_as_sent() -> None:
    """The raw HTML page arrives byte for byte with its content type."""
    api = FakeCS2CapAPI()
    api.faults.html_502("get_key")
    response = await api.transport().send(
        "GET", "https://fake.test/v1/account/key", headers={}, timeout=5
    )
    assert (response.status, response.content_type, response.body) == (
        502,
        "text/html",
        HTML_502_PAGE,
    )


async def test_a_handler_that_crashes_answers_500_on_both_paths() -> None:
    """An exception out of a handler is aiohttp's plain-text 500 in-process too, not an
    exception through the client.
    """

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("handler bug")

    api = FakeCS2CapAPI()
    api.app.router.add_get("/v1/boom", boom)
    await api.start()
    try:
        for transport, base in (
            (AiohttpTransport(), api.base_url),
            (api.transport(), "https://fake.test/v1"),
        ):
            response = await transport.send("GET", base + "/boom", headers={}, timeout=5)
            await transport.aclose()
            assert (response.status, response.content_type) == (500, "text/plain")
    finally:
        await api.close()


@attrs.define
class GatedClock(FakeClock):
    """A virtual clock whose sleeps wait until the test opens the gate."""

    gate: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def sleep(self, seconds: float) -> None:
        """Wait for the gate, then move time on."""
        await self.gate.wait()
        await super().sleep(seconds)


async def test_a_cancelled_call_leaves_the_fake_to_finish_the_request() -> None:
    """Cancelling the caller abandons the response, not the request: as a server whose
    client went away, the fake completes the reissue it had started.
    """
    clock = GatedClock()
    api = FakeCS2CapAPI()
    key_id = _child(api)
    api.faults.delay("reissue_sub_key", 1.0)
    async with AccountClient(api.root_key, transport=api.transport(clock=clock)) as client:
        call = asyncio.create_task(client.sub_keys.reissue(key_id))
        for _ in range(5):  # let the request reach the handler's delay
            await asyncio.sleep(0)
        assert api.requests["reissue_sub_key"] == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert api.key_info(key_id)["is_active"]  # still waiting in the handler
        clock.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not api.key_info(key_id)["is_active"]


def test_the_in_process_connection_answers_what_a_request_asks_of_a_socket() -> None:
    """Peer and socket names are loopback; closing is remembered."""
    loop = asyncio.new_event_loop()
    try:
        connection = InProcessConnection(FakeClock(), 1.0, loop.create_future())
        assert connection.get_extra_info("peername") == ("127.0.0.1", 0)
        assert connection.get_extra_info("cipher", "none") == "none"
        assert connection.transport is connection
        assert not connection.is_closing()
        connection.close()
        assert connection.is_closing()
    finally:
        loop.close()


async def test_one_fake_serves_both_paths_from_the_same_state(
    fake: FakeCS2CapAPI, fake_client: AccountClient, tcp_fake_client: AccountClient
) -> None:
    """The in-process and the TCP client of one fake see one account: a child created
    through either is listed by the other, and a reissue through one revokes the key the
    other holds.
    """
    made_in_process = await fake_client.sub_keys.create("in-process")
    made_over_tcp = await tcp_fake_client.sub_keys.create("tcp")

    for client in (fake_client, tcp_fake_client):
        listed = {detail.key.id for detail in (await client.sub_keys.list()).keys}
        assert listed == {made_in_process.key_info.id, made_over_tcp.key_info.id}
    assert fake.requests["create_sub_key"] == 2

    await fake_client.reissue_key()
    assert fake_client.api_key == fake.root_key
    with pytest.raises(AuthenticationError):
        await tcp_fake_client.get_key()
