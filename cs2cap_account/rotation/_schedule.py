"""When a key is due: computed from the server's timestamps, never from process start.

One process per fleet asks the server about the key each check interval
(`server_check_due()`): it writes what it learnt (`KeyRecord.key_info`, `checked_at`)
into the store, and every other process computes the schedule from the stored record
(`stored_key_info()`) without a request. A key that looks due by the stored record is
confirmed with the server before it is rotated.

A key's age is measured on the server's clock: its `created_at` against the `Date` of
the response that described it (the local clock stands in only when a response has no
`Date`). A skewed local clock therefore cannot make a key look due, or never due.

Two guards keep a schedule from rotating in a loop, whatever the clocks say:

- a key this process switched to while running (its own rotation, or one adopted from
  the store) is not rotated by the schedule until it has used it for `min_age()`, that is
  `min(1 day, max_age / 2, half the key's lifetime)`, on the monotonic clock, which no
  wall clock moves: so at most one scheduled rotation per `min_age()`, even where no
  response carries a `Date`;
- a `created_at` in the future (by more than `FUTURE_TOLERANCE`) is read as "created
  when first seen": the rotator warns once and remembers that moment.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Final

import attrs

from cs2cap_account._models import KeyInfo
from cs2cap_account.stores._record import KeyRecord

__all__ = [
    "FUTURE_TOLERANCE",
    "LONGEST_MIN_AGE",
    "Due",
    "due",
    "jittered",
    "min_age",
    "server_check_due",
    "stored_key_info",
]

FUTURE_TOLERANCE: Final = dt.timedelta(minutes=5)
"""A `created_at` this far ahead of the server's `Date` is ordinary (second-precision
headers, clocks of a server fleet); beyond it, it is a clock fault."""
LONGEST_MIN_AGE: Final = dt.timedelta(days=1)
"""`min_age()` never exceeds this."""


@attrs.frozen
class Due:
    """What a check found: the reason to rotate (or None), and the `created_at` it used.

    `created_in_future`: the server's `created_at` was ahead of its own time by more than
    `FUTURE_TOLERANCE`, so `created_at` is the moment the key was first seen instead.
    """

    reason: str | None
    created_at: dt.datetime
    created_in_future: bool = False


def min_age(info: KeyInfo, max_age: dt.timedelta | None) -> dt.timedelta:
    """The youngest a key may be for the schedule to rotate it.

    `min(1 day, max_age / 2, half the key's lifetime)`: short enough that a key due again
    is rotated well before it expires, long enough that no clock can make a loop of it.
    """
    floor = LONGEST_MIN_AGE
    if max_age is not None:
        floor = min(floor, max_age / 2)
    if info.expires_at is not None:
        floor = min(floor, max((info.expires_at - info.created_at) / 2, dt.timedelta(0)))
    return floor


def due(
    info: KeyInfo,
    *,
    server_now: dt.datetime | None,
    local_now: dt.datetime,
    max_age: dt.timedelta | None,
    before_expiry: dt.timedelta | None,
    held_for: dt.timedelta | None = None,
    first_seen_at: dt.datetime | None = None,
) -> Due:
    """Whether the key `info` describes is due, on the server's clock.

    `server_now` is the `Date` of the response that carried `info` (None without one:
    `local_now` stands in). `held_for` is how long, on the monotonic clock, this process
    has used the key, if it switched to it while running. `first_seen_at` is the server
    time at which a key with a future `created_at` was first seen, if it was: its age
    counts from then, even once its `created_at` has passed.
    """
    now = server_now if server_now is not None else local_now
    created_at = info.created_at
    in_future = created_at - now > FUTURE_TOLERANCE
    if first_seen_at is not None:  # once read as "created when first seen", always so
        created_at = first_seen_at
    elif in_future:
        created_at = now
    age = max(now - created_at, dt.timedelta(0))
    reason = None
    if max_age is not None and age >= max_age:
        reason = "max_age"
    elif (
        before_expiry is not None
        and info.expires_at is not None
        and info.expires_at - now <= before_expiry
    ):
        reason = "before_expiry"
    if reason is not None and held_for is not None and held_for < min_age(info, max_age):
        reason = None  # switched to it too recently to rotate again, whatever the clocks say
    return Due(reason, created_at, in_future)


def jittered(seconds: float, jitter: float) -> float:
    """`seconds` spread by up to ±`jitter` (a fraction), so fleets don't check in step."""
    return seconds * (1.0 + random.uniform(-jitter, jitter))  # noqa: S311 - not for secrets


def stored_key_info(record: KeyRecord | None, held_key_id: str | None) -> KeyInfo | None:
    """The stored metadata of the key held here, if the record has it for that key."""
    if record is None or record.key_info is None or held_key_id is None:
        return None
    info = record.key_info
    if record.key_id != held_key_id or info.id != record.key_id:
        return None
    return info


def server_check_due(
    record: KeyRecord | None, held_key_id: str | None, *, now: dt.datetime, interval: float
) -> bool:
    """Whether this check should ask the server about the key (one per fleet per interval).

    It should when the record has no metadata for the key held here, or when the last
    server check is `interval` seconds old or more (or in the future: a clock moved back).
    """
    if stored_key_info(record, held_key_id) is None:
        return True
    assert record is not None
    checked_at = record.checked_at
    if checked_at is None:
        return True
    age = (now - checked_at).total_seconds()
    return age >= interval or age < -interval
