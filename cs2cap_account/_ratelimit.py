"""Rate limits: reading the server's `X-RateLimit-*` headers, and pacing our own calls."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import email.utils
import math
from collections.abc import Mapping
from typing import Final

import attrs

from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._models import RateLimitInfo

__all__ = ["SlidingWindowLimiter", "parse_rate_limit", "parse_retry_after"]

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


@attrs.define
class SlidingWindowLimiter:
    """Paces requests so no `window` seconds ever hold more than `requests_per_minute` sends.

    Waiters are served first come, first served. `guard` widens the window a little, so
    that requests arriving at the server later than they left us still fit its window.
    """

    requests_per_minute: int
    window: float = 60.0
    guard: float = 0.02
    clock: Clock = attrs.field(factory=SystemClock)
    _sent: collections.deque[float] = attrs.field(factory=collections.deque, init=False)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    @property
    def span(self) -> float:
        """The window the limiter enforces, guard included, in seconds."""
        return self.window * (1.0 + self.guard)

    def note_sent(self, count: int = 1) -> None:
        """Count `count` requests as sent just now without waiting (sent before pacing began)."""
        now = self.clock.monotonic()
        self._sent.extend(now for _ in range(count))

    async def acquire(self, *, deadline: float | None = None) -> bool:
        """Wait until one more request fits the window, count it as sent, return True.

        With a `deadline` (a reading of the limiter's clock), never wait until or past
        it: return False at once instead, counting nothing.
        """
        if not await self._lock_within(deadline):
            return False
        try:
            span = self.span
            sent = self._sent
            while True:
                now = self.clock.monotonic()
                # `sent[0] + span` is also the wake-up time below: the same expression on
                # both sides, so float rounding cannot leave a wait of zero that frees nothing.
                while sent and sent[0] + span <= now:
                    sent.popleft()
                excess = len(sent) - self.requests_per_minute
                if deadline is not None and now >= deadline:
                    return False
                if excess < 0:
                    sent.append(now)
                    return True
                # After a lower rate was learned, more than one send may have to age out.
                wake = sent[excess] + span
                if deadline is not None and wake >= deadline:
                    return False
                await self.clock.sleep(wake - now)
        finally:
            self._lock.release()

    async def _lock_within(self, deadline: float | None) -> bool:
        """Take the FIFO lock; with a deadline, give up (False) rather than wait past it."""
        if deadline is None:
            await self._lock.acquire()
            return True
        try:
            await asyncio.wait_for(self._lock.acquire(), deadline - self.clock.monotonic())
        except asyncio.TimeoutError:
            return False
        return True
