"""Per-key sliding-window rate limiting, as the API enforces it per minute."""

from __future__ import annotations

import math
from collections import deque

import attrs

from cs2cap_account.testing._clock import MonotonicClock

__all__ = ["SlidingWindowLimiter", "WindowState"]


@attrs.frozen
class WindowState:
    """A bucket's state after one request: what the `X-RateLimit-*` headers report.

    `retry_after` is set (integer seconds, at least 1) only when the request was refused.
    """

    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int | None = None

    @property
    def refused(self) -> bool:
        """Whether the request that produced this state was over the limit."""
        return self.retry_after is not None


@attrs.define
class SlidingWindowLimiter:
    """Count each bucket's requests over the last `window` seconds.

    A bucket is one API key (or the session token). A refused request is not counted.
    With `enforce=False` nothing is refused, but the headers still count down.
    """

    _clock: MonotonicClock
    _window: float
    _enforce: bool
    _hits: dict[str, deque[float]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        if self._window <= 0:
            raise ValueError("rate_window must be positive")

    def hit(self, bucket: str, limit: int) -> WindowState:
        """Record one request in `bucket` if `limit` allows it; return the resulting state."""
        now = self._clock()
        hits = self._recent(bucket, now)
        if self._enforce and len(hits) >= limit:
            wait = max(1, math.ceil(hits[0] + self._window - now))
            return WindowState(limit, 0, wait, retry_after=wait)
        hits.append(now)
        return self._state(hits, limit, now)

    def peek(self, bucket: str, limit: int) -> WindowState:
        """Return `bucket`'s state without recording a request."""
        now = self._clock()
        return self._state(self._recent(bucket, now), limit, now)

    def _recent(self, bucket: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(bucket, deque())
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        return hits

    def _state(self, hits: deque[float], limit: int, now: float) -> WindowState:
        reset = math.ceil(hits[0] + self._window - now) if hits else 0
        return WindowState(limit, max(0, limit - len(hits)), max(0, reset))
