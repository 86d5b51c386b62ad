"""Watching a rotator: what its checks saw, its failures, halts and recoveries.

`Observer` keeps what `rotator.status()` reports and tells about troubles: each failed
check or rotation becomes one `RotationFailed` (`_failure` decides its stage and the
key's state), a halt becomes `RotationHalted`, and its end or a recovery with the token
`RotationRecovered`, all handed to the announcer (`on_failure` callbacks, `events()`).
It also runs what instrumentation put around a rotation (`around`, e.g. a trace span)
and after each step (`StepHooks`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Final

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._clock import Clock
from cs2cap_account._models import KeyInfo
from cs2cap_account.errors import AuthenticationError, CS2CapError, RotationError
from cs2cap_account.rotation._announce import Announcer
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._failure import (
    RotationFailed,
    RotationHalted,
    RotationRecovered,
    RotationStage,
    key_state_after,
    stage_after,
    what_to_do,
)
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._recovery import Recovery
from cs2cap_account.rotation._status import (
    LastCheck,
    LastFailure,
    LastRotation,
    RotatorStatus,
    child_statuses,
    next_due,
)
from cs2cap_account.rotation._steps import Step
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import KeyRecord

__all__ = ["Around", "Gauges", "Observer"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

Around = Callable[[str], AbstractContextManager[object]]
"""Instrumentation entered around each rotation, given its reason."""


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@attrs.frozen
class Gauges:
    """The rotator's state as numbers, for metrics read at each scrape (no I/O).

    Timestamps are Unix seconds; None where there is nothing to tell yet.
    """

    generation: int
    key_age_seconds: float | None
    last_rotation_at: float | None
    next_due_at: float | None
    halted: bool
    recoveries: int


@attrs.frozen
class _Seen:
    """The server's description of the key in force, and the schedule's reading of it."""

    info: KeyInfo
    created_at: dt.datetime  # what the schedule counts from
    server_now: dt.datetime | None  # the response's Date
    local_now: dt.datetime
    due_reason: str | None


@attrs.define
class Observer:
    """What one rotator's checks and rotations saw, and who is told about its troubles."""

    _client: AccountClient
    _holding: Holding
    _store: KeyStore
    _announcer: Announcer
    _recovery: Recovery
    _clock: Clock
    _max_age: dt.timedelta | None
    _before_expiry: dt.timedelta | None
    around: list[Around] = attrs.field(factory=list)
    last_check: LastCheck | None = None
    last_failure: RotationFailed | None = None
    last_step: Step | None = None
    _seen: _Seen | None = None
    _authenticated: dict[str, bool] = attrs.field(factory=dict)
    _reported: BaseException | None = None
    _halt_told: RotationError | None = None
    _recoveries_told: int = 0

    # -- what the rotator tells it ------------------------------------------------------

    async def passed(self, step: Step) -> None:
        """A step hook: remember the last step passed (for a failure's stage)."""
        self.last_step = step
        if step is Step.VERIFIED and self._holding.key_id is not None:
            self._authenticated[self._holding.key_id] = True

    def saw(self, info: KeyInfo, *, created_at: dt.datetime, due_reason: str | None) -> None:
        """A check read the key in force from the server (so it authenticates)."""
        self._seen = _Seen(
            info, created_at, self._client.server_date, self._clock.now(), due_reason
        )
        self._authenticated[info.id] = True

    @contextlib.contextmanager
    def rotation(self, reason: str) -> Iterator[None]:
        """Around one rotation: the instrumentation's contexts, and a fresh stage."""
        self.last_step = None
        with contextlib.ExitStack() as stack:
            for around in self.around:
                stack.enter_context(around(reason))
            yield

    def check_started(self) -> None:
        """A check begins: its stage starts afresh."""
        self.last_step = None

    async def check_ended(self, event: RotationEvent | None) -> None:
        """A check ended without an error."""
        self.last_check = LastCheck(self._clock.now(), ok=True, rotated=event is not None)
        await self.notice()

    async def check_failed(self, error: BaseException) -> None:
        """A check raised `error`: remember it, and report it unless its rotation did."""
        self.last_check = LastCheck(self._clock.now(), ok=False, error=_describe(error))
        if isinstance(error, AuthenticationError) and self._holding.key_id is not None:
            self._authenticated[self._holding.key_id] = False
        if error is not self._reported:
            await self.report(error, rotating=False)

    async def report(
        self, error: BaseException, *, rotating: bool, stage: RotationStage | None = None
    ) -> None:
        """Announce `error` as one `RotationFailed` (and a halt, if it halted).

        `stage` if given, else the one the last step passed tells (`stage_after`).
        """
        self._reported = error
        unsaved = self._holding.unsaved
        kept_aside = False
        if unsaved is not None:
            record = await self._load_quietly()
            kept_aside = record is not None and unsaved.record.key in record.kept_aside
        state = key_state_after(
            error,
            halted=self._holding.halted is not None,
            held_unsaved=unsaved is not None,
            kept_aside=kept_aside,
        )
        failure = RotationFailed(
            stage=stage or stage_after(self.last_step, rotating=rotating),
            key_state=state,
            error=error,
            action=what_to_do(state),
            key_id=self._holding.key_id,
            generation=self._holding.generation,
            failed_at=self._clock.now(),
        )
        self.last_failure = failure
        logger.info(
            "rotation failed at %s; the key is %s: %s",
            failure.stage.value,
            state.value,
            _describe(error),
        )
        await self._announcer.tell(failure)
        await self.notice()

    async def notice(self) -> None:
        """Announce a halt that began, or a trouble that ended, since the last look."""
        halted = self._holding.halted
        if halted is not None and halted is not self._halt_told:
            self._halt_told = halted
            await self._announcer.tell(
                RotationHalted(
                    reason=str(halted),
                    error=halted,
                    key_id=halted.previous_key_id,
                    halted_at=self._clock.now(),
                )
            )
        elif halted is None and self._halt_told is not None:
            self._halt_told = None
            await self._tell_recovered("new_key_stored")
        recoveries = self._recovery.recoveries
        if recoveries > self._recoveries_told:
            self._recoveries_told = recoveries
            await self._tell_recovered("recovery_token")

    async def _tell_recovered(self, how: str) -> None:
        await self._announcer.tell(
            RotationRecovered(
                how=how,
                key_id=self._holding.key_id,
                generation=self._holding.generation,
                recoveries=self._recovery.recoveries,
                recovered_at=self._clock.now(),
            )
        )

    async def _load_quietly(self) -> KeyRecord | None:
        try:
            return await self._store.load()
        except Exception:  # a store that cannot be read keeps nothing aside, as far as we know
            return None

    # -- what it tells ------------------------------------------------------------------

    def key_age(self) -> dt.timedelta | None:
        """The age of the key in force on the server's clock, now (None before a check)."""
        seen = self._current_seen()
        if seen is None:
            return None
        at = seen.server_now or seen.local_now
        return max(at - seen.created_at + (self._clock.now() - seen.local_now), dt.timedelta(0))

    def due(self) -> tuple[dt.datetime | None, str | None]:
        """When the key in force falls due, and why (see `_status.next_due`)."""
        seen = self._current_seen()
        if seen is None:
            return None, None
        return next_due(
            seen.info,
            created_at=seen.created_at,
            max_age=self._max_age,
            before_expiry=self._before_expiry,
        )

    def gauges(self) -> Gauges:
        """The numbers metrics show, now."""
        age = self.key_age()
        due_at, _ = self.due()
        event = self._holding.last_event
        return Gauges(
            generation=self._holding.generation,
            key_age_seconds=None if age is None else age.total_seconds(),
            last_rotation_at=None if event is None else event.rotated_at.timestamp(),
            next_due_at=None if due_at is None else due_at.timestamp(),
            halted=self._holding.halted is not None,
            recoveries=self._recovery.recoveries,
        )

    def _current_seen(self) -> _Seen | None:
        seen = self._seen
        if seen is None or seen.info.id != self._holding.key_id:
            return None
        return seen

    async def verify(self) -> None:
        """Ask the API whether the key in force authenticates, if nothing has told yet.

        One `GET /account/key` with it, the first time only: a key adopted from the store
        (another process rotated) is unknown here until a call made with it answers.
        """
        key_id = self._holding.key_id
        if key_id is None or key_id in self._authenticated:
            return
        try:
            info = await self._client.get_key(key=self._holding.key)
        except AuthenticationError:
            self._authenticated[key_id] = False
        except CS2CapError:
            return  # no answer: still unknown
        else:
            self._authenticated[info.id] = True

    async def status(
        self, sinks: Mapping[str, int | None], *, child_max_age: dt.timedelta | None = None
    ) -> RotatorStatus:
        """A snapshot now, reading the store once."""
        store_error = None
        record: KeyRecord | None = None
        try:
            record = await self._store.load()
        except Exception as exc:
            store_error = _describe(exc)
        holding = self._holding
        seen = self._current_seen()
        due_at, due_reason = self.due()
        event = holding.last_event
        failure = self.last_failure
        halted = holding.halted
        reachable = store_error is None
        return RotatorStatus(
            generation=holding.generation,
            key_id=holding.key_id,
            key_created_at=None if seen is None else seen.created_at,
            key_expires_at=None if seen is None else seen.info.expires_at,
            key_age=self.key_age(),
            key_authenticates=(
                None if holding.key_id is None else self._authenticated.get(holding.key_id)
            ),
            next_due_at=due_at,
            next_due_reason=due_reason,
            due_now=seen is not None and seen.due_reason is not None,
            last_check=self.last_check,
            last_rotation=(
                None
                if event is None
                else LastRotation(
                    key_id=event.key_id,
                    previous_key_id=event.previous_key_id,
                    generation=event.generation,
                    reason=event.reason,
                    rotated_at=event.rotated_at,
                )
            ),
            last_failure=(
                None
                if failure is None
                else LastFailure(
                    stage=failure.stage,
                    key_state=failure.key_state,
                    error=_describe(failure.error),
                    action=failure.action,
                    failed_at=failure.failed_at,
                )
            ),
            halted=halted is not None,
            halted_reason=None if halted is None else str(halted),
            journal_open=None if not reachable else _journal_open(record),
            kept_aside=None if not reachable else _kept_aside(record),
            recoveries=self._recovery.recoveries,
            store_reachable=reachable,
            store_error=store_error,
            taken_at=self._clock.now(),
            sinks=dict(sinks),
            children=child_statuses(record, max_age=child_max_age, now=self._clock.now()),
        )


def _journal_open(record: KeyRecord | None) -> bool:
    return record is not None and record.pending is not None


def _kept_aside(record: KeyRecord | None) -> int:
    return 0 if record is None else len(record.kept_aside)
