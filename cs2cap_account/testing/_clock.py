"""Time for the fake: a monotonic clock for rate windows, a wall clock for timestamps.

Tests pass `cs2cap_account.FakeClock`'s `monotonic` and `now` to move both by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["MonotonicClock", "WallClock", "format_timestamp", "system_wall_clock"]

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
