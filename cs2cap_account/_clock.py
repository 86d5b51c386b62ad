"""Time, injectable: the real clock by default, a virtual one for tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the SDK needs of time: a monotonic reading, the wall clock, and sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def now(self) -> dt.datetime:
        """The current wall-clock time, timezone-aware (UTC)."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""


class SystemClock:
    """The real clock: `time.monotonic`, `datetime.now(UTC)` and `asyncio.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Seconds from `time.monotonic()`."""
        return time.monotonic()

    def now(self) -> dt.datetime:
        """The current UTC time."""
        return dt.datetime.now(dt.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        await asyncio.sleep(seconds)


@attrs.define
class FakeClock:
    """A virtual clock for tests: every `sleep()` returns at once and moves time forward.

    Pass it as `AccountClient(clock=FakeClock())` (or to the rotator) and backoff waits,
    `Retry-After` waits and rate-limit pacing cost no real time; `sleeps` records each
    wait asked for, and `advance()` moves time by hand.
    """

    start: float = 1_000.0
    wall_start: dt.datetime = attrs.field(
        factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    )
    _elapsed: float = attrs.field(init=False, default=0.0)
    sleeps: list[float] = attrs.field(init=False, factory=list)

    def monotonic(self) -> float:
        """Virtual seconds."""
        return self.start + self._elapsed

    def now(self) -> dt.datetime:
        """Virtual wall-clock time."""
        return self.wall_start + dt.timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move virtual time forward without sleeping."""
        if seconds < 0:
            raise ValueError("time does not go back")
        self._elapsed += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait, advance time by it, and yield to the event loop once."""
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        self._elapsed += seconds
        await asyncio.sleep(0)
