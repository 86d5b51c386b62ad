"""Rate limits: reading the server's `X-RateLimit-*` headers, and pacing our own calls.

The server counts requests per credential: each API key has its own window (a key just
issued starts with an empty one), and so has the session JWT. The client paces the same
way: one window per credential, and each request waits in the window of the credential
it will be sent with, decided again whenever it wakes, so that calls queued for a key
that has just been replaced move to the new key's window.

A rotator's own requests (`rotation_requests()`) go ahead of ordinary calls queued for
the same window, and may spend a small reserve of each window that ordinary calls may
not (a window that ordinary traffic has filled cannot be jumped: the server would answer
429). Who may send, and when, is decided by two pure functions, `send_wait()` and
`next_up()`; `SlidingWindowLimiter` does the waiting.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import contextvars
import datetime as dt
import email.utils
import itertools
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Final

import attrs

from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._models import RateLimitInfo

__all__ = [
    "ROTATION_RESERVE",
    "SlidingWindowLimiter",
    "in_rotation",
    "next_up",
    "parse_rate_limit",
    "parse_retry_after",
    "reserve_of",
    "rotation_requests",
    "send_wait",
]

# X-RateLimit-Reset above this is a Unix timestamp; at or below, seconds from now.
_UNIX_TIMESTAMP_FLOOR: Final = 1_000_000_000


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_rate_limit(
    headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> RateLimitInfo | None:
    """Read `X-RateLimit-*` and `Retry-After`; None when the response carried none of them."""
    limit = _int_header(headers, "X-RateLimit-Limit")
    remaining = _int_header(headers, "X-RateLimit-Remaining")
    reset = _int_header(headers, "X-RateLimit-Reset")
    tier = headers.get("X-RateLimit-Tier")
    retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
    if (
        limit is None
        and remaining is None
        and reset is None
        and tier is None
        and retry_after is None
    ):
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    reset_at: dt.datetime | None = None
    if reset is not None and reset >= 0:
        try:
            if reset > _UNIX_TIMESTAMP_FLOOR:
                reset_at = dt.datetime.fromtimestamp(reset, dt.timezone.utc)
            else:
                reset_at = now + dt.timedelta(seconds=reset)
        except (OverflowError, OSError, ValueError):
            reset_at = None
    return RateLimitInfo(
        limit=limit, remaining=remaining, reset_at=reset_at, tier=tier, retry_after=retry_after
    )


ROTATION_RESERVE: Final = 5
"""Sends of each window that only a rotator's requests may spend, once a rotator paces
the client: a rotation sends at most this many with the key it replaces (the check, the
probe, the reissue and its proof). Never more than a quarter of the window."""

_ROTATING: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar(
    "cs2cap_rotation_requests", default=False
)
_DEFAULT_WINDOW: Final = "default"  # a limiter used without credentials (tests, tools)


@contextlib.contextmanager
def rotation_requests() -> Iterator[None]:
    """Within this block (and the tasks it starts), requests are the rotator's own."""
    token = _ROTATING.set(True)
    try:
        yield
    finally:
        _ROTATING.reset(token)


def in_rotation() -> bool:
    """Whether requests made here are the rotator's own (see `rotation_requests()`)."""
    return _ROTATING.get()


def reserve_of(limit: int, reserve: int) -> int:
    """The part of a `limit`-request window kept for rotation requests: at most a quarter."""
    return max(0, min(reserve, limit // 4))


def send_wait(
    sent: Sequence[float], *, now: float, limit: int, span: float, reserve: int, urgent: bool
) -> float:
    """Seconds until one more request may go in a window (0.0: now). Pure.

    `sent` holds the window's sends still inside it (sent at most `span` seconds before
    `now`), oldest first. An ordinary request may use `limit` less the reserve, a
    rotation request (`urgent`) the whole `limit`. When the window is full for it, the
    answer is the time until the send it waits for ages out.
    """
    allowed = limit if urgent else limit - reserve_of(limit, reserve)
    excess = len(sent) - allowed
    if excess < 0:
        return 0.0
    # After a lower rate was learned, more than one send may have to age out first.
    return max(sent[excess] + span - now, 0.0)


def next_up(waiting: Sequence[tuple[int, bool]]) -> int | None:
    """Of a window's waiters, as (arrival number, urgent), the number of the one served next.

    Pure: the earliest urgent (rotation) request if any, else the earliest ordinary one;
    None when nobody waits. Ordinary callers are served first come, first served.
    """
    first_urgent = min((seq for seq, urgent in waiting if urgent), default=None)
    if first_urgent is not None:
        return first_urgent
    return min((seq for seq, _ in waiting), default=None)


@attrs.define(eq=False)
class _Window:
    """One credential's window: its sends still inside it, and the requests waiting for it."""

    sent: collections.deque[float] = attrs.field(factory=collections.deque)
    waiting: dict[int, bool] = attrs.field(factory=dict)  # arrival number -> urgent
    wakers: dict[int, asyncio.Future[None]] = attrs.field(factory=dict)

    def wake_next(self) -> None:
        """Wake the waiter served next, if it is waiting for its turn."""
        head = next_up(list(self.waiting.items()))
        waker = None if head is None else self.wakers.get(head)
        if waker is not None and not waker.done():
            waker.set_result(None)

    def wake_all(self) -> None:
        """Wake every waiter, to decide again."""
        for waker in self.wakers.values():
            if not waker.done():
                waker.set_result(None)


@attrs.define
class SlidingWindowLimiter:
    """Paces requests: no `window` seconds hold more than `requests_per_minute` sends.

    Each credential (the `credential` that `acquire()` is given) has a window of its own.
    Within one, rotation requests go first, then ordinary ones first come, first served;
    ordinary requests leave `reserve` sends of each window (at most a quarter of it) to
    rotation requests. `guard` widens the window a little, so that requests arriving at
    the server later than they left us still fit its window.
    """

    requests_per_minute: int
    window: float = 60.0
    guard: float = 0.02
    clock: Clock = attrs.field(factory=SystemClock)
    reserve: int = 0
    _windows: dict[Hashable, _Window] = attrs.field(factory=dict, init=False)
    _arrivals: Iterator[int] = attrs.field(factory=itertools.count, init=False)
    admitted_at: float = attrs.field(default=0.0, init=False)
    """When the last request `acquire()` admitted was counted: read it right after
    `acquire()` returns (nothing else runs in between) to `settle()` that request."""

    @property
    def span(self) -> float:
        """The window the limiter enforces, guard included, in seconds."""
        return self.window * (1.0 + self.guard)

    def note_sent(self, count: int = 1, *, credential: Hashable = _DEFAULT_WINDOW) -> None:
        """Count `count` requests as sent just now without waiting (sent before pacing began)."""
        now = self.clock.monotonic()
        self._window(credential).sent.extend(now for _ in range(count))

    def settle(self, credential: Hashable, sent_at: float) -> None:
        """A request counted at `sent_at` has been answered: count it from now instead.

        The server counted it somewhere in between, and a burst of requests admitted at
        once reaches it spread out over more than `guard` covers: counting each from its
        answer keeps every one of them inside the server's window. A request in flight
        for longer than the window (aged out here) counts from its answer too.
        """
        if not isinstance(self.clock, SystemClock):
            return  # a virtual clock: no time passes while a request is in flight
        now = self.clock.monotonic()
        if now <= sent_at:
            return
        window = self._window(credential)
        with contextlib.suppress(ValueError):  # aged out while in flight: counted anew
            window.sent.remove(sent_at)
        bisect.insort(window.sent, now)

    def in_window(self, credential: Hashable = _DEFAULT_WINDOW) -> int:
        """How many sends of `credential` are inside its window now."""
        window = self._windows.get(credential)
        if window is None:
            return 0
        self._age(window, self.clock.monotonic())
        return len(window.sent)

    def changed(self) -> None:
        """Wake every waiter to decide again (the client switched credentials, say)."""
        for window in list(self._windows.values()):
            window.wake_all()

    async def acquire(
        self,
        *,
        deadline: float | None = None,
        credential: Callable[[], Hashable] | None = None,
        urgent: bool | None = None,
    ) -> bool:
        """Wait until one more request fits its credential's window, count it, return True.

        `credential()` names the window: the credential the request will be sent with,
        asked again at every wake-up. `urgent` (by default: whether this runs inside
        `rotation_requests()`) puts the request ahead of ordinary ones and lets it spend
        the reserve. With a `deadline` (a reading of the limiter's clock), never wait
        until or past it: return False at once instead, counting nothing.
        """
        which = credential if credential is not None else _default_window
        urgent = in_rotation() if urgent is None else urgent
        me = next(self._arrivals)
        key = which()
        window = self._window(key)
        window.waiting[me] = urgent
        try:
            while True:
                now_key = which()
                if now_key != key:  # its credential was replaced: queue in the new window
                    del window.waiting[me]
                    window.wake_next()
                    key, window = now_key, self._window(now_key)
                    window.waiting[me] = urgent
                now = self.clock.monotonic()
                if deadline is not None and now >= deadline:
                    return False
                if next_up(list(window.waiting.items())) != me:
                    if not await self._turn(window, me, None, give_up=deadline):
                        return False  # its deadline passed while others were served
                    continue
                self._age(window, now)
                wait = send_wait(
                    window.sent,
                    now=now,
                    limit=self.requests_per_minute,
                    span=self.span,
                    reserve=self.reserve,
                    urgent=urgent,
                )
                if wait <= 0.0:
                    window.sent.append(now)
                    self.admitted_at = now
                    return True
                if deadline is not None and now + wait >= deadline:
                    return False
                await self._turn(window, me, now + wait)
        finally:
            window.waiting.pop(me, None)
            window.wakers.pop(me, None)
            window.wake_next()
            self._forget_idle(key)

    def _window(self, key: Hashable) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()  # a new credential starts empty
        return window

    def _age(self, window: _Window, now: float) -> None:
        span = self.span
        sent = window.sent
        # `sent[0] + span` is also the wake-up time: the same expression on both sides,
        # so float rounding cannot leave a wait of zero that frees nothing.
        while sent and sent[0] + span <= now:
            sent.popleft()

    def _forget_idle(self, keep: Hashable) -> None:
        """Drop windows nobody waits for and that hold no send any more (replaced keys)."""
        if len(self._windows) <= 2:
            return
        now = self.clock.monotonic()
        for key, window in list(self._windows.items()):
            if key != keep and not window.waiting:
                self._age(window, now)
                if not window.sent:
                    del self._windows[key]

    async def _turn(
        self, window: _Window, me: int, until: float | None, *, give_up: float | None = None
    ) -> bool:
        """Wait until woken (another waiter sent or left, credentials changed), or `until`.

        Only the waiter served next sleeps on the clock; the others wait to be woken, so a
        virtual clock moves on for one sleeper at a time. A waiter that is not next and
        has a deadline (`give_up`) waits at most that long, in real time, as for a lock:
        False when it gave up.
        """
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        window.wakers[me] = waker
        try:
            if until is None:
                timeout = None if give_up is None else max(give_up - self.clock.monotonic(), 0.0)
                await asyncio.wait({waker}, timeout=timeout)
                return waker.done()
            seconds = max(until - self.clock.monotonic(), 0.0)
            sleep = asyncio.ensure_future(self.clock.sleep(seconds))
            try:
                await asyncio.wait({waker, sleep}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
            return True
        finally:
            window.wakers.pop(me, None)


def _default_window() -> Hashable:
    return _DEFAULT_WINDOW
