"""The client-side limiter: at most N sends in any 60 s, first come first served.

Against the fake in-process; `wire.seen` holds each request's virtual send time.
"""

from __future__ import annotations

import asyncio

import pytest

from cs2cap_account import FakeClock, Hooks
from cs2cap_account._ratelimit import SlidingWindowLimiter
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Recorder, canned, key_body
from .conftest import MakeClient

N = 5


def _answer_get_key(fake: FakeCS2CapAPI, body: dict[str, object], *, times: int) -> None:
    """Have the fake answer the next `times` `GET /account/key` with `body` (status 200)."""
    fake.faults.raw_body(
        "get_key", canned(body), status=200, content_type="application/json", times=times
    )


def assert_window_respected(times: list[float], limit: int, window: float = 60.0) -> None:
    """No `window`-second span holds more than `limit` of `times` (sorted)."""
    times = sorted(times)
    for first, later in zip(times, times[limit:], strict=False):
        assert later - first >= window, (first, later)


async def test_a_fixed_rate_is_never_exceeded_over_three_windows(
    wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A fixed rate of 5/min holds at the server over 15 calls in a row.

    No 60 s span holds a 6th request, and the pacing costs about two windows, not more.
    """
    client = make_fake_client(requests_per_minute=N)

    for _ in range(3 * N):
        await client.get_key()

    times = [seen.at for seen in wire.seen]
    assert len(times) == 3 * N
    assert_window_respected(times, N)
    assert times[-1] - times[0] <= 2 * 60 * 1.05
    assert times[N - 1] == times[0]  # the first N go out at once


async def test_concurrent_callers_are_paced_and_served_first_come_first_served(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """15 concurrent calls at 5/min are sent first come, first served, 5 per window.

    Call i is sent in window i // 5. Send times are read in the request hook, which runs as
    the limiter lets a request go: under a virtual clock, concurrent requests reach the
    server after the limiter has already moved time on, so the server's readings would lag.
    """
    sent: list[tuple[str, float]] = []
    hooks = Hooks(on_request=[lambda event: sent.append((event.path, clock.monotonic()))])
    client = make_fake_client(requests_per_minute=N, hooks=hooks)
    ids = [fake.add_child_key(f"key-{i:02d}").key_id for i in range(3 * N)]

    await asyncio.gather(*(client.sub_keys.get(key_id) for key_id in ids))

    assert [path for path, _ in sent] == [f"/account/sub-keys/{key_id}" for key_id in ids]
    span = SlidingWindowLimiter(N).span
    start = sent[0][1]
    for i, (_, at) in enumerate(sent):
        assert at == pytest.approx(start + (i // N) * span)
    assert_window_respected([at for _, at in sent], N)
    assert sorted(seen.path for seen in wire.seen) == sorted("/v1" + path for path, _ in sent)


async def test_with_options_copies_share_one_limiter(
    wire: Recorder, make_fake_client: MakeClient
) -> None:
    """Calls through the client and two `with_options` copies together stay within N/min."""
    client = make_fake_client(requests_per_minute=N)
    clients = [client, client.with_options(timeout=5), client.with_options(max_retries=0)]

    for i in range(3 * N):
        await clients[i % 3].get_key()

    assert_window_respected([seen.at for seen in wire.seen], N)


@pytest.mark.cs2cap_fake(tier="free")
async def test_the_rate_learned_from_get_key_paces_later_calls_without_a_single_429(
    make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A rate learned from `get_key()` paces later calls without a single 429.

    Against the fake (free tier, 20/min, enforced with 429s), 60 more calls after
    `get_key()` reported 20/min never hit the limit: the call that taught the rate counts.
    """
    statuses: list[int] = []
    hooks = Hooks(on_response=[lambda event: statuses.append(event.status_code)])
    client = make_fake_client(hooks=hooks)
    info = await client.get_key()
    assert info.effective_rate_requests_per_minute == 20

    for _ in range(60):
        await client.get_key()

    assert statuses == [200] * 61
    assert clock.sleeps  # it did pace


@pytest.mark.cs2cap_fake(tier="free")
async def test_earlier_requests_in_the_window_count_when_the_rate_is_learned(
    make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """Requests sent before the rate was known count against the learned limiter's window.

    They are read from `X-RateLimit-Remaining` of the response that reported the rate, so
    the limiter does not overshoot the server's window in its first minute.
    """
    statuses: list[int] = []
    hooks = Hooks(on_response=[lambda event: statuses.append(event.status_code)])
    client = make_fake_client(hooks=hooks)
    # 15 calls before the rate is known (sub-key lists teach nothing), then get_key().
    for _ in range(14):
        await client.sub_keys.list()
    await client.get_key()

    for _ in range(20):
        await client.get_key()

    assert 429 not in statuses


async def test_a_fixed_rate_is_not_replaced_by_the_learned_one(
    wire: Recorder, make_fake_client: MakeClient
) -> None:
    """An explicit `requests_per_minute=5` wins over a key reporting 300/min."""
    client = make_fake_client(requests_per_minute=N)

    for _ in range(2 * N):
        await client.get_key()

    assert_window_respected([seen.at for seen in wire.seen], N)


async def test_requests_per_minute_zero_turns_pacing_off(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`requests_per_minute=0` never paces, even after `get_key()` reports a rate."""
    _answer_get_key(fake, key_body(rate=2), times=10)
    client = make_fake_client(requests_per_minute=0)

    for _ in range(10):
        await client.get_key()

    assert clock.sleeps == []
    assert len({seen.at for seen in wire.seen}) == 1


async def test_a_lower_learned_rate_takes_effect_at_once(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A lower rate reported by `get_key()` takes effect at once.

    First 300/min, then 3/min: later sends keep to 3 per 60 s.
    """
    _answer_get_key(fake, key_body(rate=300), times=6)
    _answer_get_key(fake, key_body(rate=3), times=7)
    client = make_fake_client()

    for _ in range(6):
        await client.get_key()
    assert clock.sleeps == []
    for _ in range(7):
        await client.get_key()

    later = [seen.at for seen in wire.seen[6:]]
    assert_window_respected([seen.at for seen in wire.seen[6:]], 3)
    assert later[-1] > later[0]


async def test_the_limiter_is_fifo_even_for_a_caller_arriving_while_others_wait() -> None:
    """A caller arriving while earlier ones are still waiting queues behind them."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, clock=clock)
    served: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        served.append(name)

    first = [asyncio.create_task(take(f"early-{i}")) for i in range(4)]
    await asyncio.sleep(0)
    late = asyncio.create_task(take("late"))
    await asyncio.gather(*first, late)

    assert served == ["early-0", "early-1", "early-2", "early-3", "late"]


async def test_the_limiter_refuses_a_wait_past_a_deadline() -> None:
    """`acquire(deadline=...)` never waits until or past the deadline.

    It returns False at once, counting nothing, when the next free slot lies at or beyond
    the deadline; when the slot comes sooner, it waits and returns True.
    """
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, window=60.0, guard=0.0, clock=clock)
    assert await limiter.acquire() is True

    assert await limiter.acquire(deadline=clock.monotonic() + 60.0) is False
    assert await limiter.acquire(deadline=clock.monotonic()) is False
    assert clock.sleeps == []
    assert await limiter.acquire(deadline=clock.monotonic() + 61.0) is True
    assert clock.sleeps == [60.0]


async def test_a_client_deadline_does_not_wait_for_the_limiter_past_it(
    wire: Recorder, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A client deadline does not wait for the limiter past it.

    With the window full and `deadline=10`, the call fails fast with `APITimeoutError`
    (nothing sent) instead of sleeping a minute.
    """
    from cs2cap_account import APITimeoutError

    client = make_fake_client(requests_per_minute=1, deadline=10)
    await client.get_key()

    with pytest.raises(APITimeoutError) as caught:
        await client.get_key()

    assert caught.value.request_sent is False
    assert "rate limit" in str(caught.value)
    assert clock.sleeps == []
    assert len(wire.seen) == 1


async def test_awkward_float_times_do_not_stall_the_limiter() -> None:
    """Window arithmetic with inexact floats always makes progress.

    No zero-length sleeps that free nothing, so the limiter cannot spin.
    """
    clock = FakeClock(start=1000.1)
    limiter = SlidingWindowLimiter(3, window=0.7, guard=0.1, clock=clock)

    for _ in range(200):
        await asyncio.wait_for(limiter.acquire(), timeout=1.0)

    assert all(slept > 0 for slept in clock.sleeps)
    assert len(clock.sleeps) < 200
