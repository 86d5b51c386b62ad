"""`Retry-After`, `max_retry_wait`, the monthly quota and the overall deadline.

The fake, in-process, answers with the scripted 429s and 503s (`faults.fail`), then
normally; `fake.requests` counts what was sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    APITimeoutError,
    FakeClock,
    InternalServerError,
    RateLimitError,
)
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Recorder, assert_backoff, error_body
from .conftest import MakeClient
from .test_retry_policy import CREATE_URL, calls

PER_MINUTE: dict[str, Any] = {
    "status": 429,
    "code": "RATE_LIMIT_EXCEEDED",
    "detail": "Too Many Requests",
}
MONTHLY_BODY: dict[str, Any] = {
    "code": "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED",
    "detail": "Monthly quota exceeded",
}
MONTHLY: dict[str, Any] = {"status": 429, **MONTHLY_BODY}
ALWAYS = 100  # more requests than any test sends


def http_date(moment: dt.datetime) -> str:
    """`moment` as an HTTP date (`Thu, 01 Jan 2026 00:00:07 GMT`)."""
    return email.utils.format_datetime(moment, usegmt=True)


async def test_retry_after_in_seconds_sets_the_wait(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`Retry-After: 5` makes the client wait exactly 5 s (more than the 0.5-1 s backoff)."""
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "5"})

    await make_fake_client().get_key()

    assert clock.sleeps == [5.0]
    assert fake.requests["get_key"] == 2


async def test_retry_after_as_an_http_date(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`Retry-After` as an HTTP date 7 s ahead of the (virtual) wall clock waits 7 s."""
    when = http_date(clock.now() + dt.timedelta(seconds=7))
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": when})

    await make_fake_client().get_key()

    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("value", ["0", "-3", "not a date", "nan"])
async def test_a_short_or_unusable_retry_after_falls_back_to_the_backoff(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock, value: str
) -> None:
    """A zero, negative or unparseable `Retry-After` still waits the 0.5-1 s backoff.

    The wait is the larger of `Retry-After` and the backoff.
    """
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": value})

    await make_fake_client().get_key()

    assert len(clock.sleeps) == 1
    assert_backoff(clock.sleeps)


async def test_an_http_date_in_the_past_falls_back_to_the_backoff(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A `Retry-After` date already passed means no extra wait beyond the backoff."""
    when = http_date(clock.now() - dt.timedelta(minutes=5))
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": when})

    await make_fake_client().get_key()

    assert len(clock.sleeps) == 1
    assert_backoff(clock.sleeps)


async def test_the_backoff_wins_when_it_is_longer_than_retry_after(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """On the 4th retry the backoff (4-4.5 s) exceeds `Retry-After: 1`: the backoff is used."""
    for _ in range(4):
        fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "1"})

    await make_fake_client(max_retries=4).get_key()

    assert len(clock.sleeps) == 4
    assert clock.sleeps[0] == 1.0  # backoff 0.5-1.0 s, so Retry-After's 1 s is at least as long
    assert 1.0 <= clock.sleeps[1] <= 1.5
    assert 2.0 <= clock.sleeps[2] <= 2.5
    assert 4.0 <= clock.sleeps[3] <= 4.5


async def test_a_retry_after_beyond_max_retry_wait_raises_at_once(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A `Retry-After` beyond `max_retry_wait` (default 60 s) raises at once.

    `RateLimitError` carries `retry_after=61`; nothing is slept and nothing sent again.
    """
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "61"})

    with pytest.raises(RateLimitError) as caught:
        await make_fake_client().get_key()

    assert caught.value.retry_after == 61.0
    assert caught.value.rate_limit is not None
    assert caught.value.rate_limit.retry_after == 61.0
    assert "retry after 61 s" in str(caught.value)
    assert clock.sleeps == []
    assert fake.requests["get_key"] == 1


async def test_a_retry_after_at_the_cap_is_still_waited(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`Retry-After` equal to `max_retry_wait` is within the cap: the client waits it."""
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "60"})

    await make_fake_client().get_key()

    assert clock.sleeps == [60.0]


async def test_max_retry_wait_is_settable_per_client_and_per_call(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`max_retry_wait=10` on the client refuses a 20 s wait; `with_options` can raise it."""
    headers = {"Retry-After": "20"}
    fake.faults.fail("get_key", **PER_MINUTE, headers=headers)
    fake.faults.fail("get_key", **PER_MINUTE, headers=headers)
    client = make_fake_client(max_retry_wait=10)

    with pytest.raises(RateLimitError) as caught:
        await client.get_key()
    assert caught.value.retry_after == 20.0
    assert clock.sleeps == []

    await client.with_options(max_retry_wait=30).get_key()
    assert clock.sleeps == [20.0]


async def test_a_retry_after_beyond_the_deadline_raises_at_once(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A `Retry-After` beyond the deadline raises at once.

    With `deadline=10`, `Retry-After: 20` cannot be honoured in time: the `RateLimitError`
    (with `retry_after=20`) is raised without sleeping.
    """
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "20"})

    with pytest.raises(RateLimitError) as caught:
        await make_fake_client(deadline=10).get_key()

    assert caught.value.retry_after == 20.0
    assert clock.sleeps == []
    assert fake.requests["get_key"] == 1


async def test_a_wait_ending_exactly_at_the_deadline_is_not_taken(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A wait that would use up the whole deadline leaves no time to send: raise now."""
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "10"})

    with pytest.raises(RateLimitError):
        await make_fake_client(deadline=10).get_key()

    assert clock.sleeps == []


async def test_the_deadline_stops_retries_before_max_retries(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`deadline=4` with `max_retries=10`: backoff waits stop before 4 s have passed."""
    fake.faults.fail("get_key", status=503, times=ALWAYS)

    with pytest.raises(InternalServerError):
        await make_fake_client(max_retries=10, deadline=4).get_key()

    assert 1 <= len(clock.sleeps) < 10
    assert sum(clock.sleeps) < 4
    assert fake.requests["get_key"] == len(clock.sleeps) + 1
    assert_backoff(clock.sleeps)


async def test_the_deadline_is_per_call_via_with_options(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`with_options(deadline=...)` bounds calls through the copy; the original has none."""
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "30"})
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "30"})
    client = make_fake_client()

    with pytest.raises(RateLimitError):
        await client.with_options(deadline=5).get_key()
    assert clock.sleeps == []

    await client.get_key()
    assert clock.sleeps == [30.0]


async def test_retry_after_on_a_503_is_honoured(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A 503 with `Retry-After: 4` (standard HTTP) waits 4 s before the retry."""
    fake.faults.fail(
        "get_key", status=503, code="SERVICE_UNAVAILABLE", headers={"retry-after": "4"}
    )

    await make_fake_client().get_key()

    assert clock.sleeps == [4.0]


async def test_a_503_retry_after_beyond_the_cap_raises_at_once(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A 503 asking for 120 s (over the 60 s cap) is raised at once instead of waited."""
    fake.faults.fail("get_key", status=503, headers={"Retry-After": "120"})

    with pytest.raises(InternalServerError):
        await make_fake_client().get_key()

    assert clock.sleeps == []


async def test_the_monthly_quota_is_never_retried_and_says_when_it_resets(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """The monthly quota is never retried, and the error says when it resets.

    `RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED` is raised on the first answer, even with a
    `Retry-After`; the message names the reset time from `X-RateLimit-Reset`.
    """
    reset = int(dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc).timestamp())
    headers = {
        "Retry-After": "1",
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Tier": "free",
    }
    fake.faults.fail("get_key", **MONTHLY, headers=headers, times=ALWAYS)
    client = make_fake_client(max_retries=5)

    with pytest.raises(RateLimitError) as caught:
        await client.get_key()

    error = caught.value
    assert error.is_monthly_quota
    assert fake.requests["get_key"] == 1
    assert clock.sleeps == []
    assert error.rate_limit is not None
    assert error.rate_limit.reset_at == dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
    assert "2026-02-01T00:00:00+00:00" in str(error)
    assert "not retried" in str(error)
    assert client.rate_limit == error.rate_limit


async def test_the_monthly_quota_on_a_post_is_not_retried_either(
    mocked: aioresponses, make_client: MakeClient, clock: FakeClock
) -> None:
    """A POST answered with the monthly quota 429 is not sent again."""
    # aioresponses: a 429 with no X-RateLimit-Reset at all (the fake always sends one).
    mocked.post(CREATE_URL, status=429, payload=error_body(**MONTHLY_BODY), repeat=True)

    with pytest.raises(RateLimitError) as caught:
        await make_client().sub_keys.create("bot")

    assert caught.value.is_monthly_quota
    assert "next billing period" in str(caught.value)
    assert calls(mocked, "POST", CREATE_URL) == 1


async def test_a_post_waits_retry_after_on_a_per_minute_429(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A POST answered 429 `RATE_LIMIT_EXCEEDED` with `Retry-After: 3` is sent again after 3 s."""
    fake.faults.fail("create_sub_key", **PER_MINUTE, headers={"Retry-After": "3"})

    made = await make_fake_client().sub_keys.create("bot")

    assert fake.key_info(made.key_info.id)["name"] == "bot"
    assert clock.sleeps == [3.0]
    assert fake.requests["create_sub_key"] == 2


async def test_the_deadline_bounds_a_single_slow_attempt(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """The deadline bounds a single slow attempt, not just the retries.

    With `timeout=30` but `deadline=0.05`, a server taking 0.5 s is given up on after the
    deadline, not after the 30 s per-attempt timeout.
    """
    fake.faults.delay("get_key", 0.5)  # on the virtual clock
    client = make_fake_client(timeout=30, deadline=0.05)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(APITimeoutError):
        await client.get_key()

    assert loop.time() - started < 0.45
    assert len(wire.seen) == 1


class _OvershootingClock(FakeClock):
    """A virtual clock whose sleeps run a little long, like real timers do."""

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` plus 0.2 s."""
        await super().sleep(seconds + 0.2)


async def test_a_retry_that_wakes_after_the_deadline_is_not_sent(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A retry that wakes after the deadline is not sent.

    When a sleep overshoots past the deadline, `APITimeoutError` with
    `request_sent=False` says why.
    """
    clock = _OvershootingClock()
    fake.faults.fail("get_key", **PER_MINUTE, headers={"Retry-After": "4.9"})

    with pytest.raises(APITimeoutError) as caught:
        await make_fake_client(clock=clock, deadline=5).get_key()

    assert caught.value.request_sent is False
    assert "deadline" in str(caught.value)
    assert fake.requests["get_key"] == 1
