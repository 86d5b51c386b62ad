"""Time for the fake: a monotonic clock for rate windows, a wall clock for timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import attrs

__all__ = ["ManualClock", "MonotonicClock", "WallClock", "format_timestamp", "system_wall_clock"]

MonotonicClock = Callable[[], float]
"""Seconds from an arbitrary origin that never go backwards (like `time.monotonic`)."""

WallClock = Callable[[], datetime]
"""The current time as a timezone-aware UTC `datetime`."""


def system_wall_clock() -> datetime:
    """Return the real current time in UTC."""
    return datetime.now(timezone.utc)


def format_timestamp(moment: datetime, *, fractional: bool) -> str:
    """Render `moment` as ISO 8601 UTC with a `Z` suffix.

    The real API sends some timestamps with fractional seconds and some without, so the
    fake does both (chosen per field) and clients must parse either form.
    """
    moment = moment.astimezone(timezone.utc)
    if fractional:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class ManualClock:
    """A clock that only moves when told to, for both rate windows and timestamps.

    Pass `clock=manual.monotonic` and `wall_clock=manual.now` to `FakeCS2CapAPI`, then call
    `advance(seconds)` to let a rate window slide or a key age without sleeping::

        clock = ManualClock()
        async with FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now) as api:
            ...
            clock.advance(60)
    """

    _monotonic: float = attrs.field(default=1_000.0, alias="start")
    _wall: datetime = attrs.field(
        factory=lambda: datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc), alias="wall_start"
    )

    def monotonic(self) -> float:
        """Return the current monotonic reading, in seconds."""
        return self._monotonic

    def now(self) -> datetime:
        """Return the current wall-clock time (timezone-aware, UTC)."""
        return self._wall

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by `seconds` (which must not be negative)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._monotonic += seconds
        self._wall += timedelta(seconds=seconds)
