"""The schedule's decisions, as tables: a key's age on the server's clock, and the guards
against skewed clocks (local ahead or behind, a future `created_at`, no `Date` header).
"""

from __future__ import annotations

import datetime as dt

import pytest

from cs2cap_account import FakeClock
from cs2cap_account._models import KeyInfo
from cs2cap_account.rotation._schedule import FUTURE_TOLERANCE, LONGEST_MIN_AGE, due, min_age

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MAX_AGE = 30 * DAY


def _info(created_at: dt.datetime, expires_at: dt.datetime | None = None) -> KeyInfo:
    return KeyInfo(
        id="k1", key_prefix="sk_live", is_active=True, created_at=created_at, expires_at=expires_at
    )


# Each row: local clock minus server clock, key age by the server, `Date` sent?,
# monotonic time this process has held the key (None: since start), expected reason.
_ROWS = [
    ("in step, young", dt.timedelta(0), DAY, True, None, None),
    ("in step, due", dt.timedelta(0), 31 * DAY, True, None, "max_age"),
    ("local 31 days ahead, new key", 31 * DAY, dt.timedelta(0), True, None, None),
    ("local 31 days ahead, a day old", 31 * DAY, DAY, True, HOUR, None),
    ("local 31 days behind, due", -31 * DAY, 31 * DAY, True, None, "max_age"),
    ("local 31 days behind, young", -31 * DAY, DAY, True, None, None),
    ("no Date, in step, due", dt.timedelta(0), 31 * DAY, False, None, "max_age"),
    ("no Date, local ahead, just switched", 31 * DAY, HOUR, False, HOUR, None),
    ("no Date, local ahead, held a day", 31 * DAY, DAY, False, DAY, "max_age"),
    ("due, but switched to an hour ago", dt.timedelta(0), 31 * DAY, True, HOUR, None),
]


@pytest.mark.parametrize(
    ("skew", "age", "dated", "held_for", "expected"),
    [row[1:] for row in _ROWS],
    ids=[row[0] for row in _ROWS],
)
def test_age_is_measured_on_the_server_clock(
    skew: dt.timedelta,
    age: dt.timedelta,
    dated: bool,
    held_for: dt.timedelta | None,
    expected: str | None,
) -> None:
    """The verdict follows the server's clock when it has one, and never loops."""
    clock = FakeClock()
    server_now = clock.now()
    verdict = due(
        _info(server_now - age),
        server_now=server_now if dated else None,
        local_now=server_now + skew,
        max_age=MAX_AGE,
        before_expiry=None,
        held_for=held_for,
    )
    assert verdict.reason == expected
    assert not verdict.created_in_future


def test_a_future_created_at_counts_as_created_when_first_seen() -> None:
    """Beyond the tolerance a future `created_at` is flagged, and the key's age starts then."""
    clock = FakeClock()
    now = clock.now()
    first = due(
        _info(now + 10 * DAY), server_now=now, local_now=now, max_age=MAX_AGE, before_expiry=None
    )
    assert first.created_in_future
    assert first.created_at == now
    assert first.reason is None
    later = now + 31 * DAY
    again = due(
        _info(now + 10 * DAY),
        server_now=later,
        local_now=later,
        max_age=MAX_AGE,
        before_expiry=None,
        first_seen_at=first.created_at,
    )
    assert not again.created_in_future  # by then `created_at` has passed
    assert again.reason == "max_age"  # 31 days since first seen, not 21 since created_at


def test_a_created_at_just_ahead_is_ordinary() -> None:
    """Within `FUTURE_TOLERANCE` (second-precision `Date`s) nothing is flagged."""
    now = FakeClock().now()
    verdict = due(
        _info(now + FUTURE_TOLERANCE / 2),
        server_now=now,
        local_now=now,
        max_age=MAX_AGE,
        before_expiry=None,
    )
    assert not verdict.created_in_future
    assert verdict.reason is None


def test_before_expiry_uses_the_server_clock() -> None:
    """A key expiring within `before_expiry` by the server's time is due, however skewed."""
    now = FakeClock().now()
    info = _info(now - DAY, expires_at=now + 2 * DAY)
    ahead = due(info, server_now=now, local_now=now + 31 * DAY, max_age=None, before_expiry=3 * DAY)
    assert ahead.reason == "before_expiry"
    far = _info(now - DAY, expires_at=now + 10 * DAY)
    skewed = due(far, server_now=now, local_now=now + 31 * DAY, max_age=None, before_expiry=3 * DAY)
    assert skewed.reason is None


@pytest.mark.parametrize(
    ("max_age", "lifetime", "expected"),
    [
        (None, None, LONGEST_MIN_AGE),
        (30 * DAY, None, LONGEST_MIN_AGE),
        (HOUR, None, HOUR / 2),
        (None, 4 * HOUR, 2 * HOUR),
        (30 * DAY, 10 * DAY, LONGEST_MIN_AGE),
    ],
)
def test_min_age_is_the_documented_floor(
    max_age: dt.timedelta | None, lifetime: dt.timedelta | None, expected: dt.timedelta
) -> None:
    """`min(1 day, max_age / 2, half the key's lifetime)`."""
    now = FakeClock().now()
    info = _info(now, expires_at=None if lifetime is None else now + lifetime)
    assert min_age(info, max_age) == expected
