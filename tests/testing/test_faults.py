"""Fault injection: each scripted kind, the counters, and seeded chaos."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from cs2cap_account import FakeClock
from cs2cap_account.testing import ANY_ROUTE, HTML_502_PAGE, FakeCS2CapAPI, Fault, FaultKind

from ._support import Http, MakeFake


async def test_an_error_fault_answers_without_running_the_handler(
    api: FakeCS2CapAPI, http: Http
) -> None:
    """`fail` sends its status, code and headers; nothing is created; then it is used up."""
    api.faults.fail("create_sub_key", status=503, code="SERVICE_UNAVAILABLE", headers={"X-A": "1"})
    reply = await http.post("/account/sub-keys", token=api.root_key, json={"name": "bot"})
    assert (reply.status, reply.code) == (503, "SERVICE_UNAVAILABLE")
    assert reply.headers["X-A"] == "1"
    assert reply.headers["X-RateLimit-Tier"] == "quant"
    assert (await http.get("/account/sub-keys", token=api.root_key)).json["keys"] == []
    again = await http.post("/account/sub-keys", token=api.root_key, json={"name": "bot"})
    assert again.status == 201
    assert api.faults.injected == {"error": 1}
    assert api.requests["create_sub_key"] == 2
    assert api.faults.pending == 0


async def test_times_and_any_route_and_order(api: FakeCS2CapAPI, http: Http) -> None:
    """Faults apply to the next `times` matching requests, first scripted first."""
    api.faults.fail("get_key", status=500, code="A", times=2)
    api.faults.fail(ANY_ROUTE, status=502, code="B")
    assert api.faults.pending == 3
    codes = [(await http.get("/account/key", token=api.root_key)).code for _ in range(3)]
    assert codes == ["A", "A", "B"]
    assert (await http.get("/account/key", token=api.root_key)).status == 200
    api.faults.fail("get_key")
    assert (await http.get("/account/sub-keys", token=api.root_key)).status == 200
    assert api.faults.pending == 1
    api.faults.clear()
    api.faults.fail(ANY_ROUTE)
    assert (await http.get("/account/sub-keys", token=api.root_key)).status == 503


async def test_rate_limited_fault_sends_retry_after(api: FakeCS2CapAPI, http: Http) -> None:
    """`rate_limited` scripts a per-minute 429 with the given `Retry-After`."""
    api.faults.rate_limited("get_key", retry_after=7)
    reply = await http.get("/account/key", token=api.root_key)
    assert (reply.status, reply.code) == (429, "RATE_LIMIT_EXCEEDED")
    assert reply.headers["Retry-After"] == "7"
    assert reply.headers["X-RateLimit-Remaining"] == "0"


async def test_a_delay_outlasts_a_short_client_timeout(api: FakeCS2CapAPI, tcp_http: Http) -> None:
    """A 0.05 s delay trips a 0.01 s client timeout; without a timeout the answer arrives."""
    # Over TCP: an aiohttp client timeout against the fake's real-time delay.
    api.faults.delay("get_key", 0.05)
    assert tcp_http.session is not None
    with pytest.raises(asyncio.TimeoutError):
        async with tcp_http.session.get(
            api.base_url + "/account/key",
            headers={"Authorization": f"Bearer {api.root_key.reveal()}"},
            timeout=aiohttp.ClientTimeout(total=0.01),
        ):
            pass
    api.faults.delay("get_key", 0.01)
    assert (await tcp_http.get("/account/key", token=api.root_key)).status == 200
    assert api.faults.injected["delay"] == 2


async def test_a_drop_before_the_handler_changes_nothing(
    api: FakeCS2CapAPI, tcp_http: Http
) -> None:
    """The connection closes with no response, and the create never happened."""
    # Over TCP: what aiohttp's client sees when the fake closes a real connection.
    api.faults.drop("create_sub_key")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await tcp_http.post("/account/sub-keys", token=api.root_key, json={"name": "bot"})
    assert (await tcp_http.get("/account/sub-keys", token=api.root_key)).json["keys"] == []
    assert api.faults.injected["drop"] == 1


async def test_aiohttp_resends_a_dropped_get_once(api: FakeCS2CapAPI, tcp_http: Http) -> None:
    """Aiohttp retries an idempotent request after a disconnect; two drops reach the client."""
    # Over TCP: what aiohttp's client sees when the fake closes a real connection.
    api.faults.drop("get_key")
    assert (await tcp_http.get("/account/key", token=api.root_key)).status == 200
    assert api.requests["get_key"] == 2
    api.faults.drop("get_key", times=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await tcp_http.get("/account/key", token=api.root_key)


async def test_a_drop_after_commit_loses_a_reissue_that_happened(
    api: FakeCS2CapAPI, tcp_http: Http
) -> None:
    """The lost-response case: the client sees a dead connection, the old key is revoked."""
    # Over TCP: what aiohttp's client sees when the fake closes a real connection.
    old_key, old_id = api.root_key, api.root_key_id
    child = api.add_child_key("bot")
    api.faults.drop_after_commit("reissue_key")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await tcp_http.post("/account/key/reissue", token=old_key)
    assert api.reissues == 1
    assert api.root_key_id != old_id
    assert not api.is_active(old_key)
    assert not api.is_active(child.key)
    probe = await tcp_http.get("/account/key", token=old_key)
    assert (probe.status, probe.code) == (401, "AUTH_API_KEY_REVOKED")
    assert (await tcp_http.get("/account/key", token=api.root_key)).status == 200
    assert api.faults.injected["drop_after_commit"] == 1


class HeldClock(FakeClock):
    """A virtual clock whose sleeps last until the test lets them end."""

    def __init__(self) -> None:
        super().__init__()
        self.asleep = asyncio.Event()
        self.wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, then wait for `wake`."""
        self.asleep.set()
        await self.wake.wait()
        await super().sleep(seconds)


async def test_a_delay_after_commit_holds_the_answer_to_a_reissue_that_happened(
    api: FakeCS2CapAPI,
) -> None:
    """The reissue takes effect first; the answer (the new key) comes after the wait."""
    old_key = api.root_key
    api.faults.delay_after_commit("reissue_key", 0.2)
    clock = HeldClock()
    async with Http.open(api, clock=clock) as http:
        answer = asyncio.ensure_future(http.post("/account/key/reissue", token=old_key))
        await clock.asleep.wait()  # the fault's wait has begun

        assert api.reissues == 1
        assert not answer.done()
        assert not api.is_active(old_key)
        clock.wake.set()
        reply = await answer

    assert reply.status == 200
    assert reply.json["key"] == api.root_key.reveal()
    assert 0.2 in clock.sleeps
    assert api.faults.injected["delay_after_commit"] == 1


async def test_an_html_502_page_is_not_json(api: FakeCS2CapAPI, http: Http) -> None:
    """`html_502` answers a proxy's HTML page; the handler does not run."""
    api.faults.html_502("reissue_key")
    reply = await http.post("/account/key/reissue", token=api.root_key)
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.text.encode() == HTML_502_PAGE
    assert "X-RateLimit-Limit" in reply.headers
    assert api.reissues == 0
    assert api.faults.injected["raw_body"] == 1


async def test_a_raw_body_can_claim_success(api: FakeCS2CapAPI, http: Http) -> None:
    """`raw_body` sends any status, body and content type."""
    api.faults.raw_body("get_key", b"OK", status=200, content_type="text/plain")
    reply = await http.get("/account/key", token=api.root_key)
    assert (reply.status, reply.text) == (200, "OK")
    assert reply.headers["Content-Type"].startswith("text/plain")


async def test_a_truncated_body_follows_a_committed_effect(api: FakeCS2CapAPI, http: Http) -> None:
    """`truncated_json`: the create happened, but its 201 body is cut off mid-JSON."""
    api.faults.truncated_json("create_sub_key")
    reply = await http.post("/account/sub-keys", token=api.root_key, json={"name": "bot"})
    assert reply.status == 201
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)
    listing = (await http.get("/account/sub-keys", token=api.root_key)).json
    assert [item["key"]["name"] for item in listing["keys"]] == ["bot"]
    assert api.faults.injected["truncated_body"] == 1


async def test_a_custom_fault_with_a_delay(api: FakeCS2CapAPI, http: Http) -> None:
    """`add` takes any `Fault`; its `delay` applies before it."""
    api.faults.add("get_key", Fault(FaultKind.ERROR, 500, "BOOM", "boom", delay=0.01))
    assert (await http.get("/account/key", token=api.root_key)).code == "BOOM"


def test_scripting_mistakes_are_refused() -> None:
    """Unknown route names, `times < 1` and impossible chaos settings raise ValueError."""
    faults = FakeCS2CapAPI().faults
    with pytest.raises(ValueError, match="unknown route"):
        faults.drop("get_keys")
    with pytest.raises(ValueError, match="times"):
        faults.drop("get_key", times=0)
    with pytest.raises(ValueError, match="probabilities"):
        faults.chaos(seed=1, error=0.7, drop=0.7)
    with pytest.raises(ValueError, match="unknown routes"):
        faults.chaos(seed=1, error=0.1, routes=["nope"])


def test_clear_forgets_pending_faults_and_chaos() -> None:
    """`clear` empties the script and stops chaos."""
    faults = FakeCS2CapAPI().faults
    faults.drop("get_key", times=3)
    faults.chaos(seed=1, error=1.0)
    faults.clear()
    assert faults.pending == 0
    assert faults.take("get_key") is None


async def _statuses_under_chaos(
    make_fake: MakeFake, clock: FakeClock, seed: int, count: int
) -> list[int]:
    """Send `count` harmless PATCHes to a fake in chaos mode; return each status."""
    api = await make_fake(rate_limits=False)
    child = api.add_child_key("bot")
    api.faults.chaos(seed=seed, error=0.2, rate_limit=0.1, malformed=0.1, delay=0.01)
    statuses = []
    async with Http.open(api, clock=clock) as http:
        for _ in range(count):
            path = f"/account/sub-keys/{child.key_id}"
            statuses.append((await http.patch(path, token=api.root_key, json={})).status)
    injected = api.faults.injected
    assert api.requests["update_sub_key"] == count
    assert injected["error"] + injected["raw_body"] == sum(s != 200 for s in statuses)
    return statuses


async def test_chaos_is_reproducible_from_its_seed(make_fake: MakeFake, clock: FakeClock) -> None:
    """The same seed gives the same faults in the same order; another seed differs."""
    first = await _statuses_under_chaos(make_fake, clock, seed=7, count=40)
    second = await _statuses_under_chaos(make_fake, clock, seed=7, count=40)
    other = await _statuses_under_chaos(make_fake, clock, seed=8, count=40)
    assert first == second
    assert first != other
    assert {500, 502, 503, 429} & set(first)
    assert 200 in first


async def test_chaos_respects_routes_and_yields_to_scripts(api: FakeCS2CapAPI, http: Http) -> None:
    """Chaos only touches its routes; a scripted fault wins over chaos; stop_chaos ends it."""
    api.faults.chaos(seed=3, error=1.0, routes=["list_sub_keys"])
    assert (await http.get("/account/key", token=api.root_key)).status == 200
    assert (await http.get("/account/sub-keys", token=api.root_key)).status in {500, 502, 503}
    api.faults.fail("list_sub_keys", status=418, code="TEAPOT")
    assert (await http.get("/account/sub-keys", token=api.root_key)).status == 418
    api.faults.stop_chaos()
    assert (await http.get("/account/sub-keys", token=api.root_key)).status == 200


async def test_chaos_drops_after_commit_really_commit(api: FakeCS2CapAPI, tcp_http: Http) -> None:
    """With drop_after_commit=1.0 every reissue takes effect and every response is lost."""
    # Over TCP: what aiohttp's client sees when the fake closes a real connection.
    api.faults.chaos(seed=1, drop_after_commit=1.0, routes=["reissue_key"])
    for _ in range(3):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await tcp_http.post("/account/key/reissue", token=api.session_token)
    assert api.reissues == 3
    assert api.faults.injected["drop_after_commit"] == 3


async def test_chaos_drops_before_the_handler(api: FakeCS2CapAPI, tcp_http: Http) -> None:
    """With drop=1.0 on creates, no child key is ever made."""
    # Over TCP: what aiohttp's client sees when the fake closes a real connection.
    api.faults.chaos(seed=1, drop=1.0, routes=["create_sub_key"])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await tcp_http.post("/account/sub-keys", token=api.root_key, json={"name": "bot"})
    api.faults.stop_chaos()
    assert (await tcp_http.get("/account/sub-keys", token=api.root_key)).json["keys"] == []
