"""One window per credential, rotation requests first: the pure decisions, by table, and
the limiter that waits on them (virtual time).
"""

from __future__ import annotations

import asyncio

import pytest

from cs2cap_account import FakeClock, Hooks, RequestEvent
from cs2cap_account._clock import SystemClock
from cs2cap_account._ratelimit import (
    SlidingWindowLimiter,
    in_rotation,
    next_up,
    reserve_of,
    rotation_requests,
    send_wait,
)

from .conftest import MakeClient

SPAN = 60.0


@pytest.mark.parametrize(
    ("sent", "now", "limit", "reserve", "urgent", "expected"),
    [
        # Room in the window: now, for either kind.
        ((), 0.0, 20, 5, False, 0.0),
        ((0.0,) * 14, 1.0, 20, 5, False, 0.0),
        # Ordinary calls stop at the limit less the reserve; rotation requests go on.
        ((0.0,) * 15, 1.0, 20, 5, False, 59.0),
        ((0.0,) * 15, 1.0, 20, 5, True, 0.0),
        ((0.0,) * 19, 1.0, 20, 5, True, 0.0),
        # Full for rotation requests too: until the oldest send ages out.
        ((0.0,) * 20, 1.0, 20, 5, True, 59.0),
        ((0.0, 10.0, 20.0), 30.0, 3, 5, True, 30.0),
        # An ordinary call waits for the send that frees a slot it may use: with 5 a
        # window and a reserve of 1, the second oldest; with 8 and 2, the third oldest.
        ((0.0, 10.0, 20.0, 30.0, 40.0), 50.0, 5, 5, False, 20.0),
        ((0.0, 10.0, 20.0, 30.0, 40.0, 45.0, 50.0, 55.0), 56.0, 8, 2, False, 24.0),
        # A rate learned lower than the sends in the window: several must age out.
        ((0.0, 10.0, 20.0, 30.0), 35.0, 2, 0, False, 45.0),
    ],
)
def test_send_wait(
    sent: tuple[float, ...], now: float, limit: int, reserve: int, urgent: bool, expected: float
) -> None:
    """`send_wait()`: the seconds until one more send may go in a 60 s window, by table."""
    wait = send_wait(sent, now=now, limit=limit, span=SPAN, reserve=reserve, urgent=urgent)
    assert wait == pytest.approx(expected)


@pytest.mark.parametrize(
    ("limit", "reserve", "expected"),
    [(20, 5, 5), (300, 5, 5), (8, 5, 2), (3, 5, 0), (300, 0, 0)],
)
def test_the_reserve_is_at_most_a_quarter_of_the_window(
    limit: int, reserve: int, expected: int
) -> None:
    """`reserve_of()`: the reserve asked for, never more than a quarter of the window."""
    assert reserve_of(limit, reserve) == expected


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [
        ((), None),
        (((3, False),), 3),
        (((3, False), (1, False), (2, False)), 1),  # first come, first served
        (((1, False), (2, True), (3, True)), 2),  # the earliest rotation request first
        (((5, True), (1, False)), 5),
    ],
)
def test_next_up(waiting: tuple[tuple[int, bool], ...], expected: int | None) -> None:
    """`next_up()`: which waiter of a window goes next, by table."""
    assert next_up(waiting) == expected


def test_rotation_requests_are_marked_only_inside_the_block() -> None:
    """`rotation_requests()` marks what runs inside it, and nothing after it."""
    assert not in_rotation()
    with rotation_requests():
        assert in_rotation()
    assert not in_rotation()


async def test_each_credential_has_a_window_of_its_own_and_a_new_one_starts_empty() -> None:
    """A full window for one key does not hold back a request for another key."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, clock=clock)
    for _ in range(2):
        assert await limiter.acquire(credential=lambda: "old")
    assert limiter.in_window("old") == 2
    assert limiter.in_window("new") == 0

    assert await limiter.acquire(credential=lambda: "new")

    assert clock.sleeps == []
    assert limiter.in_window("new") == 1


async def test_a_rotation_request_goes_ahead_of_queued_ordinary_calls() -> None:
    """Ordinary calls queued on a full window are served after a rotation request.

    The rotation request spends the reserve at once; the ordinary ones wait their window.
    """
    clock = FakeClock()
    limiter = SlidingWindowLimiter(8, clock=clock, reserve=2)  # ordinary calls: 6 a window
    limiter.note_sent(6)
    served: list[str] = []

    async def take(name: str, *, urgent: bool | None) -> None:
        await limiter.acquire(urgent=urgent)
        served.append(name)

    ordinary = [asyncio.create_task(take(f"ordinary-{i}", urgent=False)) for i in range(2)]
    await asyncio.sleep(0)
    with rotation_requests():
        await take("rotation", urgent=None)  # marked by the block
    assert served == ["rotation"]
    assert clock.sleeps == []

    await asyncio.gather(*ordinary)
    assert served == ["rotation", "ordinary-0", "ordinary-1"]


async def test_a_call_queued_for_a_replaced_credential_moves_to_the_new_window() -> None:
    """A call waiting for the old key's window goes at once when the key is replaced."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, window=60.0, guard=0.0, clock=clock)
    current = ["old"]
    assert await limiter.acquire(credential=lambda: current[0])
    current[0] = "new"  # replaced: the next call is sent with the new key

    assert await limiter.acquire(credential=lambda: current[0], deadline=clock.monotonic() + 1)
    assert clock.sleeps == []
    assert limiter.in_window("new") == 1


class _Wall(SystemClock):
    """The system clock, with a monotonic reading the test moves (no real waiting)."""

    def __init__(self) -> None:
        self.at = 5_000.0

    def monotonic(self) -> float:
        return self.at


async def test_an_answered_request_counts_from_its_answer_on_the_system_clock() -> None:
    """`settle()`: a request counted when it was admitted counts from its answer instead,
    so that a burst the server receives spread out still fits its window; the window
    stays in order. With a virtual clock nothing passes in flight, and nothing moves.
    """
    clock = _Wall()
    limiter = SlidingWindowLimiter(3, clock=clock)
    limiter.note_sent(1, credential="k")
    clock.at += 0.5
    limiter.note_sent(1, credential="k")
    clock.at += 0.5  # the first request's answer comes after both were admitted
    sent = limiter._windows["k"].sent
    admitted, later = sent[0], sent[1]

    limiter.settle("k", admitted)

    assert sent[0] == later
    assert sent[1] == clock.at
    assert list(sent) == sorted(sent)
    assert limiter.in_window("k") == 2
    clock.at += 100.0  # both aged out; a request answered only now counts from now
    assert limiter.in_window("k") == 0
    limiter.settle("k", admitted)
    assert limiter.in_window("k") == 1

    virtual = SlidingWindowLimiter(3, clock=FakeClock())
    virtual.note_sent(1, credential="k")
    stamp = virtual._windows["k"].sent[0]
    virtual.clock.advance(5.0)  # type: ignore[attr-defined]
    virtual.settle("k", stamp)
    assert virtual._windows["k"].sent[0] == stamp


async def test_a_clients_request_counts_in_its_keys_window_from_its_answer(
    make_fake_client: MakeClient,
) -> None:
    """Through the client: a request answered a second after it was admitted (the answer
    is slow, on a system clock) counts once in its key's window, from its answer.
    """
    clock = _Wall()

    def slow_answer(_event: RequestEvent) -> None:
        clock.at += 1.0

    client = make_fake_client(
        requests_per_minute=5, clock=clock, hooks=Hooks(on_request=[slow_answer])
    )
    admitted = clock.at
    await client.sub_keys.list()

    limiter = client._session.shared.limiter
    assert limiter is not None
    sent = list(limiter._windows[client.api_key].sent)
    assert sent == [admitted + 1.0]
