"""When a key is due: computed from the server's timestamps, never from process start."""

from __future__ import annotations

import datetime as dt
import random

from cs2cap_account._models import KeyInfo

__all__ = ["as_timedelta", "due_reason", "jittered"]


def as_timedelta(value: dt.timedelta | float | None, *, name: str) -> dt.timedelta | None:
    """Accept a timedelta or seconds; reject negative spans."""
    if value is None:
        return None
    span = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=value)
    if span < dt.timedelta(0):
        raise ValueError(f"{name} must not be negative")
    return span


def due_reason(
    info: KeyInfo,
    now: dt.datetime,
    *,
    max_age: dt.timedelta | None,
    before_expiry: dt.timedelta | None,
) -> str | None:
    """`"max_age"` or `"before_expiry"` if the key should be rotated now, else None."""
    if max_age is not None and now - info.created_at >= max_age:
        return "max_age"
    expires_at = info.expires_at
    if before_expiry is not None and expires_at is not None and expires_at - now <= before_expiry:
        return "before_expiry"
    return None


def jittered(seconds: float, jitter: float) -> float:
    """`seconds` spread by up to ±`jitter` (a fraction), so fleets don't check in step."""
    return seconds * (1.0 + random.uniform(-jitter, jitter))  # noqa: S311 - not for secrets
