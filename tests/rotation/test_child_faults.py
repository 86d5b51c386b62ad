"""A child key's rotation meets its faults: a lapsed lease, a refusing store, a deleted
child, a slow callback, a late reissue, a skewed clock, a cancellation.

Each test provokes one fault against the fake API and asserts that no new child key is
lost, nothing is announced out of turn, and the journal ends closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from cs2cap_account import (
    AccountClient,
    ChildRotationEvent,
    FakeClock,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RotationError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

from ._support import FlakyStore

WEEK = dt.timedelta(days=7)
DAY = 86_400.0


class Crash(BaseException):
    """Raised by a step hook: the process dies there."""


def dies_at(rotator: KeyRotator, where: Step) -> None:
    """Make `rotator`'s process die right after `where`."""

    async def die(step: Step) -> None:
        if step is where:
            raise Crash

    after_step(rotator, die)


async def stored(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, *names: str
) -> KeyRecord:
    """The store holds the root key and the children `names`; returns the record."""
    for name in names:
        api.add_child_key(name)
    await KeyRotator(client, store=store, recreate_sub_keys=True).rotate_now()
    record = await store.load()
    assert record is not None
    return record


class _OwnLease:
    """One process's handle on a shared store, whose lock is its own: a lease that lapsed
    while this process stalled, so another process holds the real one meanwhile.
    """

    def __init__(self, shared: MemoryKeyStore) -> None:
        self.shared = shared
        self._lock = asyncio.Lock()

    async def load(self) -> KeyRecord | None:
        return await self.shared.load()

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        await self.shared.save(record, expected_generation=expected_generation)

    @contextlib.asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def aclose(self) -> None:
        pass


async def test_a_writer_whose_lease_lapsed_never_writes_back_another_childs_old_key(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """A stalls in a callback of its rotation of "bot" past its lease; B rotates "ci";
    then A closes its journal. Child writes keep the generation, so each applies its own
    change to the record as stored now: "ci"'s new key stays stored, and works.
    """
    shared = MemoryKeyStore()
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as first:
        await stored(api, first, shared, "bot", "ci")
    async with (
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as ca,
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as cb,
    ):
        a = KeyRotator(ca, store=_OwnLease(shared))
        b = KeyRotator(cb, store=_OwnLease(shared))
        await a.check()
        await b.check()
        stalled, release = asyncio.Event(), asyncio.Event()

        @a.on_child_rotate
        async def stall(event: ChildRotationEvent) -> None:
            stalled.set()
            await release.wait()

        rotating = asyncio.ensure_future(a.rotate_child_now("bot"))
        await stalled.wait()
        ci = await b.rotate_child_now("ci")
        release.set()
        bot = await rotating

    record = await shared.load()
    assert record is not None
    assert record.sub_keys["ci"].id == ci.key_id and api.is_active(record.sub_keys["ci"].key)
    assert record.sub_keys["bot"].id == bot.key_id and api.is_active(record.sub_keys["bot"].key)
    assert record.child_rotations == {}


async def test_rotate_child_now_never_passes_off_an_old_rotation_whose_close_failed(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """A crash left a saved rotation of "bot" open; the next `rotate_child_now` finishes
    it, but the store refuses the journal's close: it raises rather than return that
    old rotation as the one asked for, and nothing more is reissued.
    """
    store = FlakyStore()
    await stored(api, client, store, "bot")
    dying = KeyRotator(client, store=store)
    dies_at(dying, Step.CHILD_SAVED)
    with pytest.raises(Crash):
        await dying.rotate_child_now("bot")
    store.failing = lambda record: not record.child_rotations

    rotator = KeyRotator(client, store=store)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)
    with pytest.raises(RotationError, match="could not be closed"):
        await rotator.rotate_child_now("bot", reason="compromised")

    assert api.child_reissues["bot"] == 1
    assert [event.reason for event in told] == ["manual"]  # the finished one, told once
    store.failing = lambda record: False
    assert (await rotator.rotate_child_now("bot", reason="compromised")).reason == "compromised"
    assert api.child_reissues["bot"] == 2


async def test_a_child_deleted_while_its_journal_was_open_is_dropped_once(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A crash right after the journal; then the child is deleted by hand. The next check
    finds the old child gone and no child of its name: it closes the journal, drops the
    entry (from the store and `child_keys`) and reports it once; the next check is quiet.
    """
    before = await stored(api, client, store, "bot")
    clock.advance(8 * DAY)
    dying = KeyRotator(client, store=store, child_max_age=WEEK)
    dies_at(dying, Step.CHILD_JOURNALED)
    with pytest.raises(Crash):
        await dying.check()
    await client.sub_keys.delete(before.sub_keys["bot"].id)

    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    failures: list[object] = []
    rotator.on_failure(failures.append)
    await rotator.check()
    await rotator.check()

    record = await store.load()
    assert record is not None
    assert (record.sub_keys, record.child_rotations) == ({}, {})
    assert "bot" not in rotator.child_keys
    assert len(failures) == 1 and "is gone" in str(failures[0].error)  # type: ignore[attr-defined]
    assert api.child_reissues == {}


async def test_a_look_held_up_by_a_slow_callback_tells_the_key_stored_now(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A follower adopts "a" and "b" in one look; its callback for "a" is slow, and
    meanwhile "b" is rotated again. The look reads the store before telling of "b": it
    announces the live key, never the one just revoked.
    """
    await stored(api, client, store, "a", "b")
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as other:
        follower = KeyRotator(other, store=store, callback_timeout=3600)
        await follower.check()
        leader = KeyRotator(client, store=store)
        slow, release = asyncio.Event(), asyncio.Event()
        told: list[tuple[str, str]] = []

        @follower.on_child_rotate
        async def note(event: ChildRotationEvent) -> None:
            told.append((event.name, event.key_id))
            if event.name == "a":
                slow.set()
                await release.wait()

        await leader.rotate_child_now("a")
        revoked = await leader.rotate_child_now("b")
        looking = asyncio.ensure_future(follower.check())
        await slow.wait()
        live = await leader.rotate_child_now("b")
        release.set()
        await looking

    assert [key_id for name, key_id in told if name == "b"] == [live.key_id]
    assert revoked.key_id not in {key_id for _, key_id in told}
    assert follower.child_keys["b"] == live.new_key


async def test_a_save_that_landed_though_it_failed_is_not_saved_twice(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The store takes the new child but reports a failure every time: the key is held
    here. At the next check it is found stored already: let go, no second save, no new
    generation; its rotation is finished and told once.
    """
    store = FlakyStore()
    before = await stored(api, client, store, "bot")
    rotator = KeyRotator(client, store=store)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)
    store.failing_after_save = lambda record: (
        "bot" in record.sub_keys and record.sub_keys["bot"].id != before.sub_keys["bot"].id
    )
    with pytest.raises(RotationError, match="held here"):
        await rotator.rotate_child_now("bot")
    store.failing_after_save = lambda record: False

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert record.sub_keys["bot"].generation == 2
    assert record.child_rotations == {}
    assert [event.key_id for event in told] == [record.sub_keys["bot"].id]
    assert api.child_reissues["bot"] == 1


async def test_a_new_child_the_store_refused_is_held_and_saved_at_the_next_check(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The store refuses the new child's save (every try): it is held here, not told;
    at the next check, the store back, it is saved, verified and told, with no second
    reissue.
    """
    store = FlakyStore()
    before = await stored(api, client, store, "bot")
    rotator = KeyRotator(client, store=store)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)
    store.failing = lambda record: (
        "bot" in record.sub_keys and record.sub_keys["bot"].id != before.sub_keys["bot"].id
    )
    with pytest.raises(RotationError, match="held here"):
        await rotator.rotate_child_now("bot")
    assert told == []
    store.failing = lambda record: False

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert api.child_reissues["bot"] == 1
    assert api.is_active(record.sub_keys["bot"].key)
    assert [event.key_id for event in told] == [record.sub_keys["bot"].id]
    assert record.child_rotations == {}


async def test_a_late_reissue_that_revokes_the_saved_child_is_recovered_at_verification(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """Right after the save, a reissue lands that revokes the saved child (as a first
    attempt completing late would): its verification is refused, and the child that
    reissue made is found by name and reissued with the root key, then saved and told.
    """
    await stored(api, client, store, "bot")
    rotator = KeyRotator(client, store=store)
    landed = False

    async def late_reissue(step: Step) -> None:
        nonlocal landed
        if step is Step.CHILD_SAVED and not landed:
            landed = True
            record = await store.load()
            assert record is not None
            async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as other:
                await other.sub_keys.reissue(record.sub_keys["bot"].id)

    after_step(rotator, late_reissue)
    event = await rotator.rotate_child_now("bot")

    record = await store.load()
    assert record is not None
    assert api.child_reissues["bot"] == 3  # ours, the late one, the recovery
    assert record.sub_keys["bot"].id == event.key_id
    assert api.is_active(event.new_key)
    assert record.child_rotations == {}


async def test_a_journal_whose_reissue_never_happened_is_closed_and_the_child_rotated(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A crash right after the journal: the old child is still active, so nothing was
    reissued. The next check closes the journal and, the child being due, rotates it
    once.
    """
    await stored(api, client, store, "bot")
    clock.advance(8 * DAY)
    dying = KeyRotator(client, store=store, child_max_age=WEEK)
    dies_at(dying, Step.CHILD_JOURNALED)
    with pytest.raises(Crash):
        await dying.check()
    assert api.child_reissues == {}

    await KeyRotator(client, store=store, child_max_age=WEEK).check()

    record = await store.load()
    assert record is not None
    assert api.child_reissues["bot"] == 1
    assert record.child_rotations == {}
    assert api.is_active(record.sub_keys["bot"].key)


async def test_a_probe_without_an_answer_leaves_the_journal_for_the_next_check(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A crash right after the journal, and the probe of the old child gets 503s: the
    journal stays open and the failure is reported; the next check, the API back,
    closes it and rotates.
    """
    await stored(api, client, store, "bot")
    clock.advance(8 * DAY)
    dying = KeyRotator(client, store=store, child_max_age=WEEK)
    dies_at(dying, Step.CHILD_JOURNALED)
    with pytest.raises(Crash):
        await dying.check()
    api.faults.fail("get_sub_key", times=50)
    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    failures: list[object] = []
    rotator.on_failure(failures.append)

    await rotator.check()
    record = await store.load()
    assert record is not None and "bot" in record.child_rotations
    assert any("could not tell" in str(f.error) for f in failures)  # type: ignore[attr-defined]

    api.faults.clear()
    await rotator.check()
    record = await store.load()
    assert record is not None
    assert record.child_rotations == {}
    assert api.child_reissues["bot"] == 1


async def test_a_root_rotation_drops_an_open_child_journal_and_re_creates_the_child(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A child's rotation left open by a crash after its reissue; then the root rotates
    (its reissue revokes every child): the child journal goes, and the child that
    reissue made is re-created under the new root, working.
    """
    await stored(api, client, store, "bot")
    dying = KeyRotator(client, store=store)
    dies_at(dying, Step.CHILD_REISSUED)
    with pytest.raises(Crash):
        await dying.rotate_child_now("bot")

    rotator = KeyRotator(client, store=store, recreate_sub_keys=True)
    event = await rotator.rotate_now()

    record = await store.load()
    assert record is not None
    assert record.child_rotations == {}
    assert api.is_active(record.sub_keys["bot"].key)
    assert event.sub_keys["bot"].key == record.sub_keys["bot"].key


async def test_a_child_rotation_stopped_after_its_save_is_finished_by_the_next_look(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """Cancelled while it waits after the save (in verification or a callback): the
    new child is stored; the next look verifies and tells it, with no second reissue.
    """
    await stored(api, client, store, "bot")
    rotator = KeyRotator(client, store=store)
    saved = asyncio.Event()

    async def hang(step: Step) -> None:  # the reissue and its save are shielded: after them
        if step is Step.CHILD_VERIFIED:
            saved.set()
            await asyncio.Event().wait()

    remove = after_step(rotator, hang)
    rotating = asyncio.ensure_future(rotator.rotate_child_now("bot"))
    await saved.wait()
    rotating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rotating
    remove()
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert api.child_reissues["bot"] == 1
    assert record.child_rotations == {}
    assert [event.key_id for event in told] == [record.sub_keys["bot"].id]


@pytest.mark.parametrize("local_behind_server", [20 * DAY, -20 * DAY])
async def test_a_skewed_local_clock_neither_stops_nor_loops_child_rotation(
    local_behind_server: float,
) -> None:
    """The local clock 20 days off the server's, either way; a child 8 days old by the
    server's time, `child_max_age` 7 days. Checked hourly for a day, it is rotated
    exactly once: the server's `Date` decides its age, not the local clock.
    """
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    offset = dt.timedelta(seconds=local_behind_server)
    async with (
        FakeCS2CapAPI(
            tier="quant", clock=clock.monotonic, wall_clock=lambda: clock.now() + offset
        ) as api,
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as client,
    ):
        store = MemoryKeyStore()
        await stored(api, client, store, "bot")
        clock.advance(8 * DAY)
        rotator = KeyRotator(client, store=store, child_max_age=WEEK)
        for _ in range(24):
            await rotator.check()
            clock.advance(3600)
    assert api.child_reissues["bot"] == 1


async def test_a_store_error_reading_the_journal_back_stops_before_the_reissue(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The store refuses the child's journal: nothing is reissued, the child is unchanged."""
    store = FlakyStore()
    before = await stored(api, client, store, "bot")
    store.failing = lambda record: bool(record.child_rotations)
    with pytest.raises(RotationError, match="nothing was reissued"):
        await KeyRotator(client, store=store).rotate_child_now("bot")
    assert api.child_reissues == {}
    after = await store.load()
    assert after is not None and after.sub_keys == before.sub_keys
