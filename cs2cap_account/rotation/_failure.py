"""What a rotator tells about its troubles: `RotationFailed`, `RotationHalted`, `RotationRecovered`.

A failed check or rotation is announced as `RotationFailed`: the stage it failed at,
the state it left the key in (`KeyState`), the error, and what to do. A rotator that
stops reissuing after a lost key announces `RotationHalted`; the end of such a trouble
(a lost key recovered with the token, or a halt lifted by a new key in the store),
`RotationRecovered`. They go to `@rotator.on_failure` callbacks and to
`rotator.events(failures=True)`.

Which state a failure left the key in, and what to do about it, are decided here by
pure functions (`key_state_after`, `what_to_do`, `stage_after`), tested by their
tables; the rotator gathers the facts they take.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from typing import Final

import attrs

from cs2cap_account.errors import ReissueOutcomeUnknownError
from cs2cap_account.rotation._steps import Step

__all__ = [
    "FAILURE_EVENTS",
    "FailureEvent",
    "KeyState",
    "RotationFailed",
    "RotationHalted",
    "RotationRecovered",
    "RotationStage",
    "key_state_after",
    "stage_after",
    "what_to_do",
]


class KeyState(str, enum.Enum):
    """The state a failure left the root key in (compares equal to its value)."""

    UNCHANGED = "unchanged"
    """Nothing was revoked: the key in force before is still in force and stored."""
    LOST = "lost"
    """The key in force was revoked and its successor lost: no root key works until a new
    one is stored (the rotator is halted) or the recovery token replaces it."""
    HELD_IN_MEMORY = "held_in_memory"
    """A new key is in force but held only in this process's memory: the store could not
    take it; the next check saves it. Other processes hold a revoked key meanwhile."""
    FENCED = "fenced"
    """The save of a new key was fenced off (another writer moved the store on): the key
    is kept aside in the store and held here; the next look probes it."""
    UNKNOWN = "unknown"
    """Whether the reissue took effect could not be told: the journal stays open and the
    next check probes the stored key to find out."""


class RotationStage(str, enum.Enum):
    """Where a check or rotation failed (compares equal to its value)."""

    CHECK = "check"
    """Before any rotation: reading the store, catching up, or `GET /account/key`."""
    JOURNAL = "journal"
    """Steps 1-3: writing the journal, reading it back, snapshotting the child keys."""
    REISSUE = "reissue"
    """Step 4: the reissue (or a recovery's reissue)."""
    SAVE = "save"
    """Steps 5-6: saving the new key and switching to it."""
    VERIFY = "verify"
    """Step 7: the new key's verification."""
    CHILDREN = "children"
    """Step 8: re-creating the child keys; or a child key's own rotation."""
    ANNOUNCE = "announce"
    """Step 9: callbacks, `events()`, closing the journal."""


_STAGE_AFTER: Final[dict[Step | None, RotationStage]] = {
    None: RotationStage.JOURNAL,
    Step.JOURNALED: RotationStage.REISSUE,
    Step.REISSUED: RotationStage.SAVE,
    Step.SAVED: RotationStage.VERIFY,
    Step.VERIFIED: RotationStage.CHILDREN,
    Step.CHILDREN: RotationStage.ANNOUNCE,
    Step.ANNOUNCED: RotationStage.ANNOUNCE,
    # A child key's own rotation fails at the children's stage, whatever its step.
    **dict.fromkeys(
        (
            Step.CHILD_JOURNALED,
            Step.CHILD_REISSUED,
            Step.CHILD_SAVED,
            Step.CHILD_VERIFIED,
            Step.CHILD_ANNOUNCED,
        ),
        RotationStage.CHILDREN,
    ),
}


def stage_after(last_step: Step | None, *, rotating: bool) -> RotationStage:
    """The stage a failure happened at, from the last step passed before it.

    `rotating`: the failure came out of a rotation (`rotate_now()`); otherwise out of a
    check, which fails at `CHECK` unless it was finishing a rotation's steps.
    """
    if not rotating and last_step is None:
        return RotationStage.CHECK
    return _STAGE_AFTER[last_step]


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def key_state_after(
    error: BaseException, *, halted: bool, held_unsaved: bool, kept_aside: bool
) -> KeyState:
    """The state a failure left the key in, from what the rotator holds after it.

    `halted`: the rotator halted (a lost key, no recovery token); `held_unsaved`: it
    holds a new key the store does not; `kept_aside`: that key is kept aside in the store.
    """
    if halted:
        return KeyState.LOST
    if held_unsaved:
        return KeyState.FENCED if kept_aside else KeyState.HELD_IN_MEMORY
    if any(isinstance(link, ReissueOutcomeUnknownError) for link in _chain(error)):
        return KeyState.UNKNOWN
    return KeyState.UNCHANGED


_WHAT_TO_DO: Final = {
    KeyState.UNCHANGED: (
        "Nothing was revoked. Fix the cause the error names (store, network, account); "
        "the next due check tries again."
    ),
    KeyState.LOST: (
        "No root key works. Reissue with a session JWT and put the new key in the store "
        "(`CS2C_SESSION_TOKEN=... cs2cap-account key reissue --store PATH --yes`); the "
        "rotator adopts it at its next check. Then pass recovery_token to KeyRotator."
    ),
    KeyState.HELD_IN_MEMORY: (
        "Fix the store quickly and keep this process running: the next check saves the "
        "new key. Other processes get 401s until then; if this process dies first, the "
        "key is lost."
    ),
    KeyState.FENCED: (
        "Nothing: the new key is kept aside in the store and promoted when the stored key "
        "stops working. Find out why two rotators overlapped (a stalled process, a lease "
        "too short)."
    ),
    KeyState.UNKNOWN: (
        "Nothing if a recovery token is set: the next check probes the stored key and "
        "finishes or recovers the rotation. Otherwise watch for a halt."
    ),
}


def what_to_do(state: KeyState) -> str:
    """What an operator does about a failure that left the key in `state`."""
    return _WHAT_TO_DO[state]


@attrs.frozen
class RotationFailed:
    """A check or rotation failed; the rotator goes on (a halted one waits).

    `stage` is where it failed, `key_state` what it left the key in, `error` the error
    (`RotationError` for a rotation, with its cause chained), `action` what to do. `key_id`
    and `generation` are those of the key in force afterwards (None and 0 before the
    rotator first looked).
    """

    stage: RotationStage
    key_state: KeyState
    error: BaseException
    action: str
    key_id: str | None
    generation: int
    failed_at: dt.datetime


@attrs.frozen
class RotationHalted:
    """The rotator stopped reissuing: a key was lost and there is no recovery token.

    It reissues nothing until another key is in the store; `reason` (the error's message)
    says how to get one. `key_id` is the key whose successor was lost.
    """

    reason: str
    error: BaseException
    key_id: str | None
    halted_at: dt.datetime


@attrs.frozen
class RotationRecovered:
    """A trouble ended: a lost key was replaced, or a halt lifted.

    `how` is `"recovery_token"` (the rotator reissued with it; `recoveries` counts those
    so far) or `"new_key_stored"` (another key appeared in the store and lifted the halt).
    `key_id` and `generation` are the key in force now.
    """

    how: str
    key_id: str | None
    generation: int
    recoveries: int
    recovered_at: dt.datetime


FailureEvent = RotationFailed | RotationHalted | RotationRecovered
"""What `@rotator.on_failure` callbacks receive."""
FAILURE_EVENTS: Final = (RotationFailed, RotationHalted, RotationRecovered)
"""The kinds of `FailureEvent`, for `isinstance`."""
