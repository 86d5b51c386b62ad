"""The fake's rate limits: per-key sliding windows on an injected clock, and the monthly 429."""

from __future__ import annotations

import pytest

from cs2cap_account import FakeClock
from cs2cap_account.testing import TIERS, FakeCS2CapAPI

from ._support import Http, MakeFake, Reply, Token


async def burst(http: Http, token: Token, count: int) -> list[Reply]:
    """Send `count` `GET /account/key` requests with `token`."""
    return [await http.get("/account/key", token=token) for _ in range(count)]


@pytest.mark.parametrize("tier", sorted(TIERS))
async def test_each_tier_allows_its_rpm_then_answers_429(make_fake: MakeFake, tier: str) -> None:
    """Free 20, starter 40, pro 100, quant 300 per minute; then 429 with Retry-After."""
    rpm = {"free": 20, "starter": 40, "pro": 100, "quant": 300}[tier]
    api = await make_fake(tier=tier)
    async with Http.open(api) as http:
        replies = await burst(http, api.root_key, rpm + 1)
    assert [reply.status for reply in replies[:-1]] == [200] * rpm
    refused = replies[-1]
    assert (refused.status, refused.code) == (429, "RATE_LIMIT_EXCEEDED")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Limit"] == str(rpm)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Tier"] == tier


async def test_headers_count_down_within_the_window(make_fake: MakeFake, clock: FakeClock) -> None:
    """Remaining drops by one per request; Reset is the seconds until the oldest expires."""
    api = await make_fake(tier="free")
    async with Http.open(api) as http:
        first = await http.get("/account/key", token=api.root_key)
        clock.advance(15)
        second = await http.get("/account/key", token=api.root_key)
    assert (first.headers["X-RateLimit-Remaining"], first.headers["X-RateLimit-Reset"]) == (
        "19",
        "60",
    )
    assert (second.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Reset"]) == (
        "18",
        "45",
    )


async def test_the_window_slides(make_fake: MakeFake, clock: FakeClock) -> None:
    """Requests leave the window 60 s after they were made, one by one."""
    api = await make_fake(tier="free")
    async with Http.open(api) as http:
        await burst(http, api.root_key, 10)
        clock.advance(30)
        await burst(http, api.root_key, 10)
        clock.advance(20)
        refused = await http.get("/account/key", token=api.root_key)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "10"
        clock.advance(10)
        again = await burst(http, api.root_key, 11)
    assert [reply.status for reply in again] == [200] * 10 + [429]
    assert again[-1].headers["Retry-After"] == "30"  # the t=30 requests are now oldest


async def test_refused_requests_do_not_count(make_fake: MakeFake, clock: FakeClock) -> None:
    """Hammering while limited does not push the window's end further out."""
    api = await make_fake(tier="free")
    async with Http.open(api) as http:
        await burst(http, api.root_key, 20)
        assert {reply.status for reply in await burst(http, api.root_key, 50)} == {429}
        clock.advance(60)
        assert (await http.get("/account/key", token=api.root_key)).status == 200


async def test_each_key_has_its_own_bucket(api: FakeCS2CapAPI, http: Http) -> None:
    """A child's override is its limit, separate from the root key's and the session's."""
    child = api.add_child_key("slow", rate_requests_per_minute_override=3)
    child_replies = await burst(http, child.key, 4)
    assert [reply.status for reply in child_replies] == [200, 200, 200, 429]
    assert child_replies[0].headers["X-RateLimit-Limit"] == "3"
    root_reply = await http.get("/account/key", token=api.root_key)
    session_reply = await http.get("/account/key", token=api.session_token)
    assert root_reply.status == session_reply.status == 200
    assert root_reply.headers["X-RateLimit-Remaining"] == "299"
    assert session_reply.headers["X-RateLimit-Remaining"] == "299"


async def test_a_lowered_override_applies_at_once(api: FakeCS2CapAPI, http: Http) -> None:
    """PATCHing a child's RPM override changes the limit its next request meets."""
    child = api.add_child_key("bot")
    await burst(http, child.key, 2)
    await http.patch(
        f"/account/sub-keys/{child.key_id}",
        token=api.root_key,
        json={"rate_requests_per_minute_override": 2},
    )
    assert (await http.get("/account/key", token=child.key)).status == 429


async def test_account_routes_count_against_the_minute_limit(
    make_fake: MakeFake,
) -> None:
    """Management routes share the key's per-minute window."""
    api = await make_fake(tier="free")
    async with Http.open(api) as http:
        await burst(http, api.root_key, 19)
        assert (await http.get("/account/sub-keys", token=api.root_key)).status == 200
        assert (await http.get("/account/sub-keys", token=api.root_key)).status == 429


async def test_rate_limits_can_be_switched_off(make_fake: MakeFake) -> None:
    """`rate_limits=False`: never 429, but the headers still count."""
    api = await make_fake(tier="free", rate_limits=False)
    async with Http.open(api) as http:
        replies = await burst(http, api.root_key, 25)
    assert {reply.status for reply in replies} == {200}
    assert replies[-1].headers["X-RateLimit-Remaining"] == "0"
    assert replies[-1].headers["X-RateLimit-Limit"] == "20"


async def test_the_window_can_be_scaled_down(make_fake: MakeFake, clock: FakeClock) -> None:
    """`rate_window=1.0` makes the per-minute limit a per-second one (Retry-After stays ≥ 1)."""
    api = await make_fake(tier="free", rate_window=1.0)
    async with Http.open(api) as http:
        replies = await burst(http, api.root_key, 21)
        assert replies[-1].status == 429
        assert replies[-1].headers["Retry-After"] == "1"
        clock.advance(1.0)
        assert (await http.get("/account/key", token=api.root_key)).status == 200


async def test_monthly_quota_429_comes_only_from_fault_injection(
    api: FakeCS2CapAPI, http: Http
) -> None:
    """Account routes ignore the monthly quota; the injected 429 carries monthly numbers."""
    api.record_usage(api.root_key_id, 5_000_000)
    assert (await http.get("/account/key", token=api.root_key)).status == 200
    child = api.add_child_key("capped", quota_requests_per_month_override=1000)
    api.faults.monthly_quota_exceeded("get_key", times=2)
    root_reply = await http.get("/account/key", token=api.root_key)
    child_reply = await http.get("/account/key", token=child.key)
    for reply, quota in ((root_reply, "1000000"), (child_reply, "1000")):
        assert (reply.status, reply.code) == (429, "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED")
        assert "Retry-After" not in reply.headers
        assert reply.headers["X-RateLimit-Limit"] == quota
        assert reply.headers["X-RateLimit-Remaining"] == "0"
        assert int(reply.headers["X-RateLimit-Reset"]) > 0
    assert api.faults.injected["monthly_quota"] == 2
    assert (await http.get("/account/key", token=api.root_key)).status == 200
