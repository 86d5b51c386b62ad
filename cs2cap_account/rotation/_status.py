"""What `rotator.status()` says: `RotatorStatus`, and the pure rules behind it.

A status is a frozen snapshot, taken when asked: the key in force (generation, id,
age), when it falls due and why (`next_due`), the last check and rotation, a halt, the
store's journal and kept-aside keys, recoveries, and whether the rotator is ready to
serve (`not_ready`): the readiness probe of `cs2cap-account rotate --metrics-port`.
Nothing here does I/O; `_observe` gathers the facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from cs2cap_account._models import KeyInfo
from cs2cap_account.rotation._failure import KeyState, RotationStage
from cs2cap_account.stores._record import KeyRecord

__all__ = [
    "ChildStatus",
    "LastCheck",
    "LastFailure",
    "LastRotation",
    "RotatorStatus",
    "child_statuses",
    "next_due",
    "not_ready",
]


@attrs.frozen
class LastCheck:
    """The last scheduled check (`rotator.check()`): when it ended, and how.

    `ok` is False when it raised; `error` is then the error's type and message (which
    never hold a plaintext key). `rotated` is True when it finished, adopted or made a
    rotation.
    """

    at: dt.datetime
    ok: bool
    rotated: bool = False
    error: str | None = None


@attrs.frozen
class LastRotation:
    """The last new key this process announced (made here, finished or adopted)."""

    key_id: str
    previous_key_id: str | None
    generation: int
    reason: str
    rotated_at: dt.datetime


@attrs.frozen
class LastFailure:
    """The last `RotationFailed`, summarised: stage, key state, error text, what to do."""

    stage: RotationStage
    key_state: KeyState
    error: str
    action: str
    failed_at: dt.datetime


@attrs.frozen
class ChildStatus:
    """One child key as the store holds it, for `RotatorStatus.children`.

    `key_id` and `generation` are the stored child's (None and 0 while a first rotation
    of a child not yet stored is open); `created_at` and `age` from its stored metadata
    (None without); `next_due_at` when `child_max_age` rotates it (None without one);
    `journal_open`: a rotation of it is in progress, or was left by a crash.
    """

    name: str
    key_id: str | None
    generation: int
    created_at: dt.datetime | None
    age: dt.timedelta | None
    next_due_at: dt.datetime | None
    journal_open: bool


def child_statuses(
    record: KeyRecord | None, *, max_age: dt.timedelta | None, now: dt.datetime
) -> tuple[ChildStatus, ...]:
    """The stored children (and open child journals) of `record`, by name, in order."""
    if record is None:
        return ()
    names = dict.fromkeys((*record.sub_keys, *record.child_rotations))
    statuses = []
    for name in names:
        entry = record.sub_keys.get(name)
        created = None if entry is None or entry.info is None else entry.info.created_at
        statuses.append(
            ChildStatus(
                name=name,
                key_id=None if entry is None else entry.id,
                generation=0 if entry is None else entry.generation,
                created_at=created,
                age=None if created is None else max(now - created, dt.timedelta(0)),
                next_due_at=None if created is None or max_age is None else created + max_age,
                journal_open=name in record.child_rotations,
            )
        )
    return tuple(statuses)


@attrs.frozen
class RotatorStatus:
    """A snapshot of a rotator, from `await rotator.status()`.

    - `generation`, `key_id`: the key in force (0 and None before the first look);
      `key_created_at`, `key_expires_at`, `key_age`: from the server's description of it
      at the last check (None before one); `key_authenticates`: whether the last call
      made with it to `GET /account/key` (a check, or a rotation's verification)
      succeeded (None if none was made with this key yet);
    - `next_due_at`, `next_due_reason` (`"max_age"` or `"before_expiry"`): when the
      schedule rotates it next, None when neither limit applies; `due_now`: the last
      check found it due;
    - `last_check`, `last_rotation`, `last_failure`: None until there was one;
    - `halted`, `halted_reason`: the rotator reissues nothing until another key is in
      the store, and the message saying how to get one;
    - `journal_open`, `kept_aside`: what the store holds (None when it cannot be read);
      `store_reachable` and `store_error`: whether it could be read just now;
    - `recoveries`: lost keys replaced with the recovery token;
    - `sinks`: each sink's last published generation, by name (empty without sinks);
    - `children`: each child key the store holds, with its age and when
      `child_max_age` rotates it (`ChildStatus`; empty when it cannot be read);
    - `taken_at`: when this snapshot was taken.
    """

    generation: int
    key_id: str | None
    key_created_at: dt.datetime | None
    key_expires_at: dt.datetime | None
    key_age: dt.timedelta | None
    key_authenticates: bool | None
    next_due_at: dt.datetime | None
    next_due_reason: str | None
    due_now: bool
    last_check: LastCheck | None
    last_rotation: LastRotation | None
    last_failure: LastFailure | None
    halted: bool
    halted_reason: str | None
    journal_open: bool | None
    kept_aside: int | None
    recoveries: int
    store_reachable: bool
    store_error: str | None
    taken_at: dt.datetime
    sinks: Mapping[str, int | None] = attrs.field(factory=dict)
    children: tuple[ChildStatus, ...] = ()

    @property
    def ready(self) -> bool:
        """Whether the rotator is fit to serve: see `not_ready()`."""
        return not not_ready(self)


def not_ready(status: RotatorStatus) -> tuple[str, ...]:
    """Why `status` is not ready, one reason a line; empty when it is.

    Ready means: the key in force is known and authenticates, the store can be read, and
    nothing is halted.
    """
    reasons = []
    if status.key_id is None:
        reasons.append("the key in force is not known yet: no check has completed")
    elif status.key_authenticates is None:
        reasons.append(f"the key in force ({status.key_id}) has not been checked yet")
    elif not status.key_authenticates:
        reasons.append(f"the key in force ({status.key_id}) does not authenticate")
    if not status.store_reachable:
        reasons.append(f"the key store cannot be read ({status.store_error})")
    if status.halted:
        reasons.append(f"halted: {status.halted_reason}")
    return tuple(reasons)


def next_due(
    info: KeyInfo,
    *,
    created_at: dt.datetime,
    max_age: dt.timedelta | None,
    before_expiry: dt.timedelta | None,
) -> tuple[dt.datetime | None, str | None]:
    """When the key `info` describes falls due, and why: the earlier of its two limits.

    `created_at` is the creation time the schedule counts from (the server's, or when a
    key with a future `created_at` was first seen: see `_schedule.due`). Returns
    `(None, None)` when neither `max_age` nor `before_expiry` applies.
    """
    candidates: list[tuple[dt.datetime, str]] = []
    if max_age is not None:
        candidates.append((created_at + max_age, "max_age"))
    if before_expiry is not None and info.expires_at is not None:
        candidates.append((info.expires_at - before_expiry, "before_expiry"))
    if not candidates:
        return None, None
    when, reason = min(candidates, key=lambda candidate: candidate[0])
    return when, reason
