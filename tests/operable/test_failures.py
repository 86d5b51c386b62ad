"""Failure events: `RotationFailed`, `RotationHalted`, `RotationRecovered`, and `status()`.

The pure rules are tested by their tables; the rest drives a real rotator against the
fake through the failures of the failure table in docs/rotation.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import attrs
import pytest
from rotation._support import FlakyStore

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    KeyState,
    MemoryKeyStore,
    ReissueOutcomeUnknownError,
    RotationError,
    RotationEvent,
    RotationFailed,
    RotationHalted,
    RotationRecovered,
    RotationStage,
    StaleGenerationError,
    StoreError,
)
from cs2cap_account.rotation import FailureEvent, Step
from cs2cap_account.rotation._failure import key_state_after, stage_after, what_to_do
from cs2cap_account.sinks import FileSink
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import put_new_key


@pytest.mark.parametrize(
    ("error", "halted", "unsaved", "aside", "state"),
    [
        (RotationError("x"), False, False, False, KeyState.UNCHANGED),
        (RotationError("x"), True, False, False, KeyState.LOST),
        (RotationError("x"), True, True, True, KeyState.LOST),
        (RotationError("x"), False, True, False, KeyState.HELD_IN_MEMORY),
        (RotationError("x"), False, True, True, KeyState.FENCED),
        (ReissueOutcomeUnknownError("?"), False, False, False, KeyState.UNKNOWN),
    ],
)
def test_key_state_after_a_failure(
    error: BaseException, halted: bool, unsaved: bool, aside: bool, state: KeyState
) -> None:
    """A halt means lost; a held key is fenced when kept aside, else held in memory; an
    unknown reissue outcome anywhere in the chain is unknown; otherwise nothing changed.
    """
    assert key_state_after(error, halted=halted, held_unsaved=unsaved, kept_aside=aside) is state


def test_an_unknown_outcome_is_found_through_the_cause_chain() -> None:
    """`RotationError` raised from `ReissueOutcomeUnknownError` reads as UNKNOWN."""
    try:
        try:
            raise ReissueOutcomeUnknownError("no answer")
        except ReissueOutcomeUnknownError as inner:
            raise RotationError("could not tell") from inner
    except RotationError as outer:
        error = outer
    state = key_state_after(error, halted=False, held_unsaved=False, kept_aside=False)
    assert state is KeyState.UNKNOWN


@pytest.mark.parametrize(
    ("last", "rotating", "stage"),
    [
        (None, False, RotationStage.CHECK),
        (None, True, RotationStage.JOURNAL),
        (Step.JOURNALED, True, RotationStage.REISSUE),
        (Step.REISSUED, True, RotationStage.SAVE),
        (Step.SAVED, False, RotationStage.VERIFY),
        (Step.VERIFIED, True, RotationStage.CHILDREN),
        (Step.CHILDREN, True, RotationStage.ANNOUNCE),
    ],
)
def test_stage_after_the_last_step(last: Step | None, rotating: bool, stage: RotationStage) -> None:
    """The stage is the one after the last step passed; a check that passed none is CHECK."""
    assert stage_after(last, rotating=rotating) is stage


def test_every_state_says_what_to_do() -> None:
    """Each key state has its own advice; a lost key's names the command that mends it."""
    advice = {state: what_to_do(state) for state in KeyState}
    assert len(set(advice.values())) == len(KeyState)
    assert "key reissue --store" in advice[KeyState.LOST]


class Seen:
    """Every failure event a rotator told, through on_failure and events(failures=True)."""

    def __init__(self, rotator: KeyRotator) -> None:
        self.told: list[FailureEvent] = []
        self.streamed: list[RotationEvent | FailureEvent] = []
        rotator.on_failure(self.told.append)
        self._task = asyncio.ensure_future(self._follow(rotator))

    async def _follow(self, rotator: KeyRotator) -> None:
        async for event in rotator.events(failures=True):
            self.streamed.append(event)

    async def settle(self) -> None:
        """Let the stream catch up with what was told."""
        for _ in range(3):
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        """Stop following."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_lost_key_without_token_fails_halts_and_recovers_once_a_key_is_stored(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    session_client: AccountClient,
    store: MemoryKeyStore,
    clock: FakeClock,
) -> None:
    """A lost reissue response with no recovery token: one RotationFailed (stage reissue,
    key lost, advice to reissue with a session JWT) and one RotationHalted, to callbacks
    and to events(failures=True); status() says halted and not ready. A key stored by hand
    lifts the halt at the next check: RotationRecovered("new_key_stored"), ready again.
    """
    rotator = KeyRotator(fake_client, store=store)
    seen = Seen(rotator)
    await rotator.check()
    assert (await rotator.status()).ready
    fake.faults.drop_after_commit("reissue_key")
    with pytest.raises(RotationError):
        await rotator.rotate_now()
    await seen.settle()
    failed, halted = seen.told
    assert isinstance(failed, RotationFailed) and isinstance(halted, RotationHalted)
    assert (failed.stage, failed.key_state) == (RotationStage.REISSUE, KeyState.LOST)
    assert "key reissue --store" in failed.action
    assert halted.reason == str(failed.error)
    assert seen.streamed == seen.told
    status = await rotator.status()
    assert status.halted and not status.ready
    assert status.journal_open is True
    assert status.last_failure is not None and status.last_failure.key_state is KeyState.LOST

    assert await rotator.check() is None, "halted: a check reissues nothing and fails nothing"
    assert len(seen.told) == 2

    new_id = await put_new_key(store, session_client, clock)
    event = await rotator.check()
    assert event is not None and event.key_id == new_id
    await seen.settle()
    recovered = seen.told[-1]
    assert isinstance(recovered, RotationRecovered)
    assert (recovered.how, recovered.key_id) == ("new_key_stored", new_id)
    assert [type(e) for e in seen.streamed[-2:]] == [RotationEvent, RotationRecovered]
    status = await rotator.status()
    assert status.ready and not status.halted and status.key_id == new_id
    await seen.aclose()


async def test_a_recovery_with_the_token_is_told(
    fake: FakeCS2CapAPI, fake_client: AccountClient, store: MemoryKeyStore
) -> None:
    """A lost response recovered with the token: no failure, one RotationRecovered."""
    rotator = KeyRotator(fake_client, store=store, recovery_token=fake.session_token)
    seen = Seen(rotator)
    fake.faults.drop_after_commit("reissue_key")
    event = await rotator.rotate_now()
    await seen.settle()
    assert seen.told == [
        RotationRecovered(
            how="recovery_token",
            key_id=event.key_id,
            generation=event.generation,
            recoveries=1,
            recovered_at=seen.told[0].recovered_at,  # type: ignore[union-attr]
        )
    ]
    assert (await rotator.status()).recoveries == 1
    await seen.aclose()


async def test_a_store_down_after_the_reissue_leaves_the_key_held_in_memory(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """The save fails: RotationFailed at stage save, key held only in memory; the next
    check saves it and the status shows the new key, journal closed.
    """
    store = FlakyStore()
    rotator = KeyRotator(fake_client, store=store)
    seen = Seen(rotator)
    store.failing = lambda record: record.generation == 2
    with pytest.raises(RotationError, match="could not be saved"):
        await rotator.rotate_now()
    (failed,) = seen.told
    assert isinstance(failed, RotationFailed)
    assert (failed.stage, failed.key_state) == (RotationStage.SAVE, KeyState.HELD_IN_MEMORY)
    store.failing = lambda record: False
    await rotator.check()
    status = await rotator.status()
    assert (status.generation, status.journal_open, status.key_id) == (2, False, fake.root_key_id)
    await seen.aclose()


async def test_a_fenced_save_is_told_as_fenced(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """Another writer moves the store on between the reissue and the save: the key is
    kept aside there; the failure says fenced, and the status counts one kept aside.
    """

    class Overtaken(MemoryKeyStore):
        async def save(self, record, *, expected_generation):  # type: ignore[no-untyped-def]
            if record.generation == 2 and record.pending is not None and not record.kept_aside:
                other = attrs.evolve(record, key_id="key_other", pending=None)
                await super().save(other, expected_generation=expected_generation)
                raise StaleGenerationError("moved on", expected_generation=1, stored_generation=2)
            await super().save(record, expected_generation=expected_generation)

    store = Overtaken()
    rotator = KeyRotator(fake_client, store=store)
    seen = Seen(rotator)
    with pytest.raises(RotationError, match="fenced off"):
        await rotator.rotate_now()
    (failed,) = seen.told
    assert isinstance(failed, RotationFailed)
    assert failed.key_state is KeyState.FENCED
    assert (await rotator.status()).kept_aside == 1
    await seen.aclose()


async def test_a_failing_check_is_told_once_at_stage_check(
    fake: FakeCS2CapAPI, fake_client: AccountClient, store: MemoryKeyStore
) -> None:
    """A check whose GET fails: one RotationFailed at stage check, key unchanged; the
    status's last check says it failed, and why.
    """
    rotator = KeyRotator(fake_client, store=store)
    seen = Seen(rotator)
    await rotator.check()
    fake.faults.fail("get_key", status=500, times=10)
    with pytest.raises(Exception, match="500"):
        await rotator.check()
    (failed,) = seen.told
    assert isinstance(failed, RotationFailed)
    assert (failed.stage, failed.key_state) == (RotationStage.CHECK, KeyState.UNCHANGED)
    status = await rotator.status()
    assert status.last_check is not None and not status.last_check.ok
    assert status.last_check.error is not None and "500" in status.last_check.error
    await seen.aclose()


async def test_a_rotation_failing_inside_a_check_is_told_once(
    fake: FakeCS2CapAPI, fake_client: AccountClient, store: MemoryKeyStore
) -> None:
    """A due key whose reissue is refused: the check raises, and one failure is told."""
    rotator = KeyRotator(fake_client, store=store, max_age=dt.timedelta(days=30))
    seen = Seen(rotator)
    fake.age_root_key(dt.timedelta(days=31))
    fake.faults.fail("reissue_key", status=403, code="EMAIL_NOT_VERIFIED")
    with pytest.raises(RotationError, match="still in force"):
        await rotator.check()
    (failed,) = seen.told
    assert isinstance(failed, RotationFailed)
    assert (failed.stage, failed.key_state) == (RotationStage.REISSUE, KeyState.UNCHANGED)
    await seen.aclose()


async def test_status_tells_the_schedule(
    fake: FakeCS2CapAPI, fake_client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """After a check: generation, key id, created_at and age, the next due time and its
    reason (the earlier limit), whether it authenticates, the last check; a store that
    cannot be read makes it not ready, saying why.
    """
    rotator = KeyRotator(
        fake_client,
        store=store,
        max_age=dt.timedelta(days=30),
        before_expiry=dt.timedelta(days=7),
    )
    before = await rotator.status()
    assert (before.key_id, before.ready, before.last_check) == (None, False, None)
    fake.age_root_key(dt.timedelta(days=10))
    fake.set_root_expires_at(clock.now() + dt.timedelta(days=12))
    await rotator.check()
    status = await rotator.status()
    assert (status.generation, status.key_id) == (1, fake.root_key_id)
    assert status.key_created_at is not None and status.key_age is not None
    assert abs(status.key_age - dt.timedelta(days=10)) < dt.timedelta(minutes=1)
    assert status.next_due_reason == "before_expiry"
    assert status.next_due_at is not None
    assert abs(status.next_due_at - (clock.now() + dt.timedelta(days=5))) < dt.timedelta(minutes=1)
    assert status.key_authenticates and not status.due_now
    assert status.last_check is not None and status.last_check.ok
    assert status.ready and status.sinks == {}
    clock.advance(3600)
    later = await rotator.status()
    assert later.key_age is not None and later.key_age - status.key_age == dt.timedelta(hours=1)

    async def unreadable() -> None:
        raise StoreError("disk gone (simulated)")

    store.load = unreadable  # type: ignore[method-assign]
    broken = await rotator.status()
    assert not broken.store_reachable and broken.journal_open is None
    assert not broken.ready
    assert broken.store_error is not None and "disk gone" in broken.store_error


async def test_on_failure_refuses_what_is_not_callable(fake_client: AccountClient) -> None:
    """`on_failure` validates its argument like `on_rotate`; `events()` its flag."""
    rotator = KeyRotator(fake_client)
    with pytest.raises(TypeError):
        rotator.on_failure("not a callback")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rotator.events(failures="yes")  # type: ignore[call-overload]


async def test_status_tells_each_sinks_last_published_generation(
    fake_client: AccountClient, store: MemoryKeyStore, tmp_path: Path
) -> None:
    """With sinks, `status().sinks` names each one and the generation it last got: None
    before any key was published to it, the new generation after a rotation.
    """
    sink = FileSink(tmp_path / "key")
    rotator = KeyRotator(fake_client, store=store, sinks=[sink])
    assert (await rotator.status()).sinks == {sink.name: None}

    event = await rotator.rotate_now()

    assert (await rotator.status()).sinks == {sink.name: event.generation}
