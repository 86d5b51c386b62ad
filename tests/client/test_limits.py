"""Rate-limit headers, client-side pacing, hooks, the 401 reload, and the clocks.

Pacing and hooks run against the fake, in-process (its `raw_body` fault serves a key
reporting any rate). aioresponses stays where a test pins exact header values or reads
the headers the client handed to aiohttp.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    AccountClient,
    APITimeoutError,
    AuthenticationError,
    FakeClock,
    Hooks,
    InternalServerError,
    RateLimitInfo,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    SecretKey,
    SystemClock,
)
from cs2cap_account._ratelimit import parse_rate_limit, parse_retry_after
from cs2cap_account._session import Credentials
from cs2cap_account.testing import FakeCS2CapAPI

from ._payloads import (
    NEW_ROOT_KEY,
    ROOT_KEY,
    calls,
    error,
    key_info,
    sent_headers,
    total_calls,
    url,
)

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
KEY = url("/account/key")


def on_fake(fake: FakeCS2CapAPI, clock: FakeClock, **kwargs: Any) -> AccountClient:
    """A client of `fake` with its root key, in-process, on the virtual clock."""
    return AccountClient(
        fake.root_key, transport=fake.transport(clock=clock), clock=clock, **kwargs
    )


def reports_rate(fake: FakeCS2CapAPI, rate: int, *, times: int) -> None:
    """The next `times` `GET /account/key` answer 200 with a key whose rate is `rate`."""
    body = json.dumps({"key": key_info(effective_rate_requests_per_minute=rate)}).encode()
    fake.faults.raw_body("get_key", body, status=200, content_type="application/json", times=times)


# -- header parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Mon, 02 Mar 2026 10:30:30 GMT", 30.0),
        ("Mon, 02 Mar 2026 10:29:00 GMT", 0.0),
        ("Mon, 02 Mar 2026 10:31:00", 60.0),
        ("soon", None),
        ("", None),
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP date; garbage and infinities are ignored."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_without_now() -> None:
    """An HTTP date in the past, measured against the real clock, is no wait at all."""
    assert parse_retry_after("Mon, 02 Mar 2020 10:30:30 GMT") == 0.0


def test_parse_rate_limit_without_headers() -> None:
    """A response without any rate-limit header gives None."""
    assert parse_rate_limit({"Content-Type": "application/json"}, now=NOW) is None


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("45", NOW + dt.timedelta(seconds=45)),
        ("1000000000", NOW + dt.timedelta(seconds=1_000_000_000)),
        ("1772447460", dt.datetime(2026, 3, 2, 10, 31, tzinfo=UTC)),
        ("-1", None),
        ("later", None),
        ("99999999999999999999", None),
    ],
)
def test_parse_rate_limit_reset(reset: str, expected: dt.datetime | None) -> None:
    """X-RateLimit-Reset above 1e9 is a Unix time, else seconds from now; junk is dropped."""
    info = parse_rate_limit({"X-RateLimit-Reset": reset, "X-RateLimit-Limit": "20"}, now=NOW)
    assert info == RateLimitInfo(limit=20, reset_at=expected)


def test_parse_rate_limit_all_headers() -> None:
    """Every header lands in its RateLimitInfo field; unparsable numbers become None."""
    headers = {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "many",
        "X-RateLimit-Tier": "pro",
        "Retry-After": "4",
    }
    assert parse_rate_limit(headers, now=NOW) == RateLimitInfo(
        limit=100, remaining=None, reset_at=None, tier="pro", retry_after=4.0
    )


async def test_rate_limit_headers_of_a_success(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """`client.rate_limit` reflects the headers of the latest successful response."""
    mock.get(
        KEY,
        payload={"key": key_info()},
        headers={
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "12",
            "X-RateLimit-Reset": "20",
            "X-RateLimit-Tier": "quant",
        },
    )

    await client.get_key()

    assert client.rate_limit == RateLimitInfo(
        limit=300,
        remaining=12,
        reset_at=clock.now() + dt.timedelta(seconds=20),
        tier="quant",
    )


# -- client-side pacing ---------------------------------------------------------------


async def test_requests_per_minute_paces_calls(fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """With `requests_per_minute=2` the third call waits (virtually) for the window to move."""
    async with on_fake(fake, clock, requests_per_minute=2) as client:
        await client.get_key()
        await client.get_key()
        assert clock.sleeps == []
        await client.get_key()

    assert fake.requests["get_key"] == 3
    assert len(clock.sleeps) == 1
    assert 60.0 <= clock.sleeps[0] <= 62.0


async def test_rate_is_learned_from_get_key(fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """Without `requests_per_minute`, the key's effective rate from get_key() paces later calls."""
    reports_rate(fake, 1, times=2)
    async with on_fake(fake, clock) as client:
        await client.get_key()
        assert clock.sleeps == []
        await client.get_key()

    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 60.0


async def test_learned_rate_is_updated(fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """A later get_key() reporting another rate replaces the learned one."""
    reports_rate(fake, 100, times=1)
    reports_rate(fake, 1, times=2)
    async with on_fake(fake, clock) as client:
        await client.get_key()
        await client.get_key()
        assert clock.sleeps == [], "at 100/min two calls need no wait"
        await client.get_key()

    assert len(clock.sleeps) == 1, "at the newly learned 1/min the third call waits"
    assert clock.sleeps[0] >= 60.0


async def test_fixed_rate_is_not_relearned(fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """`requests_per_minute=0` turns pacing off, whatever the server reports."""
    reports_rate(fake, 1, times=5)
    async with on_fake(fake, clock, requests_per_minute=0) as client:
        for _ in range(5):
            await client.get_key()

    assert clock.sleeps == []


async def test_deadline_spent_waiting_for_the_limiter(
    fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """When pacing would outlast the deadline, nothing is sent: APITimeoutError, not sent."""
    async with on_fake(fake, clock, requests_per_minute=1, deadline=5.0) as client:
        await client.get_key()
        with pytest.raises(APITimeoutError) as caught:
            await client.get_key()

    assert caught.value.request_sent is False
    assert "deadline" in str(caught.value)
    assert fake.requests["get_key"] == 1


async def test_retry_after_on_503_is_honoured(fake: FakeCS2CapAPI, clock: FakeClock) -> None:
    """A 503 with Retry-After waits at least that long before the retry."""
    fake.faults.fail("get_key", status=503, code="DOWN", detail="x", headers={"Retry-After": "9"})

    async with on_fake(fake, clock, requests_per_minute=0) as client:
        await client.get_key()

    assert clock.sleeps[0] >= 9.0


# -- hooks ----------------------------------------------------------------------------


async def test_hooks_see_requests_responses_and_retries(
    fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """on_request, on_response and on_retry are called with their events, in order."""
    seen: list[Any] = []
    hooks = Hooks(on_request=[seen.append], on_response=[seen.append], on_retry=[seen.append])
    fake.faults.fail("get_key", status=502, code="BAD_GATEWAY", detail="x")
    async with on_fake(fake, clock, hooks=hooks) as client:
        await client.get_key()

    kinds = [type(event) for event in seen]
    assert kinds == [RequestEvent, ResponseEvent, RetryEvent, RequestEvent, ResponseEvent]
    assert seen[0] == RequestEvent("GET", "/account/key", 1)
    assert seen[1].status_code == 502
    assert seen[1].elapsed >= 0
    assert seen[2].attempt == 1
    assert seen[2].wait == clock.sleeps[0]
    assert isinstance(seen[2].error, InternalServerError)
    assert seen[3] == RequestEvent("GET", "/account/key", 2)
    assert seen[4].status_code == 200


async def test_a_failing_hook_is_logged_and_ignored(
    fake: FakeCS2CapAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises does not fail the request; the error is logged."""

    def broken(event: object) -> None:
        raise RuntimeError("metrics backend down")

    hooks = Hooks(on_request=[broken], on_response=[broken])
    async with on_fake(fake, clock, hooks=hooks) as client:
        with caplog.at_level(logging.ERROR, logger="cs2cap_account"):
            info = await client.get_key()

    assert info.is_active
    assert any("hook raised" in record.getMessage() for record in caplog.records)


# -- credentials ----------------------------------------------------------------------


async def test_401_reloads_the_key_once(mock: aioresponses, client: AccountClient) -> None:
    """After a 401 the reload callback's newer key is used for one more attempt."""
    reloads: list[int] = []

    async def reload() -> SecretKey | None:
        reloads.append(1)
        return SecretKey(NEW_ROOT_KEY)

    client.on_unauthorized(reload)
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))
    mock.get(KEY, payload={"key": key_info()})

    await client.get_key()

    assert [sent_headers(c)["Authorization"] for c in calls(mock, "GET", "/account/key")] == [
        f"Bearer {ROOT_KEY}",
        f"Bearer {NEW_ROOT_KEY}",
    ]
    assert reloads == [1]
    assert client.api_key == SecretKey(NEW_ROOT_KEY)


@pytest.mark.parametrize("fresh", [None, ROOT_KEY])
async def test_401_stands_without_a_newer_key(
    mock: aioresponses, client: AccountClient, fresh: str | None
) -> None:
    """If the reload finds nothing new (None or the same key), the 401 is raised, no retry."""

    async def reload() -> SecretKey | None:
        return None if fresh is None else SecretKey(fresh)

    client.on_unauthorized(reload)
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"), repeat=True)

    with pytest.raises(AuthenticationError):
        await client.get_key()
    assert total_calls(mock) == 1


async def test_401_reload_happens_only_once(mock: aioresponses, client: AccountClient) -> None:
    """A second 401 with the reloaded key is raised; the reload is not asked again."""
    keys = iter([NEW_ROOT_KEY, "sk_live_root_Third0000000000000000000"])

    async def reload() -> SecretKey | None:
        return SecretKey(next(keys))

    client.on_unauthorized(reload)
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"), repeat=True)

    with pytest.raises(AuthenticationError):
        await client.get_key()
    assert total_calls(mock) == 2


async def test_get_key_for_another_key(mock: aioresponses, client: AccountClient) -> None:
    """`get_key(key=...)` describes that key without switching the client to it."""
    mock.get(KEY, payload={"key": key_info()}, repeat=True)

    await client.get_key(key=NEW_ROOT_KEY)
    await client.get_key(key=SecretKey(NEW_ROOT_KEY))
    await client.get_key()

    assert [sent_headers(c)["Authorization"] for c in calls(mock, "GET", "/account/key")] == [
        f"Bearer {NEW_ROOT_KEY}",
        f"Bearer {NEW_ROOT_KEY}",
        f"Bearer {ROOT_KEY}",
    ]
    assert client.api_key == SecretKey(ROOT_KEY)


# -- clocks ---------------------------------------------------------------------------


def test_client_exposes_its_clock(clock: FakeClock) -> None:
    """`client.clock` is the clock it was given, or the system clock by default."""
    assert AccountClient(ROOT_KEY, clock=clock).clock is clock
    assert isinstance(AccountClient(ROOT_KEY).clock, SystemClock)


async def test_fake_clock() -> None:
    """FakeClock moves only when slept on or advanced, and records every sleep."""
    clock = FakeClock()
    start, wall = clock.monotonic(), clock.now()

    await clock.sleep(2.5)
    await clock.sleep(-1)
    clock.advance(0.5)

    assert clock.sleeps == [2.5, 0.0]
    assert clock.monotonic() == start + 3.0
    assert clock.now() == wall + dt.timedelta(seconds=3)
    assert wall.tzinfo is not None
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


async def test_system_clock() -> None:
    """SystemClock reads real time, timezone-aware; a zero sleep returns."""
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= before
    assert clock.now().tzinfo is not None
    assert abs((clock.now() - dt.datetime.now(UTC)).total_seconds()) < 5


def test_credentials_headers_for_an_override_token() -> None:
    """A per-request token gets its own bearer header, with Content-Type only for a body."""
    creds = Credentials(SecretKey(ROOT_KEY), SecretKey(NEW_ROOT_KEY), "ua/1")
    override = SecretKey("sk_live_root_Override0000000000000")

    with_body = creds.headers(json_body=True, token=override)
    bare = creds.headers(json_body=False, token=override)

    assert with_body["Authorization"] == f"Bearer {override.reveal()}"
    assert with_body["Content-Type"] == "application/json"
    assert "Content-Type" not in bare
    assert creds.headers(json_body=False)["Authorization"] == f"Bearer {ROOT_KEY}"
    assert creds.session_token == SecretKey(NEW_ROOT_KEY)
    assert creds.current == SecretKey(ROOT_KEY)
