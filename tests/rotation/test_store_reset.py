"""A store that is reset (emptied, or written again from scratch) never costs the key.

Black-box on the fake and a `FileKeyStore`: a reset is the key file deleted, as a Redis
restarted without persistence loses its record. Keys are told apart by id and store
lineage, never by generation number alone; a key once in hand is written back, never
dropped; callbacks fire once per key id in each process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FakeClock,
    FileKeyStore,
    KeyRecord,
    KeyRotator,
    RotationError,
    RotationEvent,
    StoreError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.stores._record import successor
from cs2cap_account.testing import FakeCS2CapAPI, after_step


class DownableFileStore(FileKeyStore):
    """A `FileKeyStore` that, while `down`, fails every save of a new key (the journal
    writes go through): an outage that starts just after the reissue.
    """

    down = False

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Save, or fail like a store that cannot be reached."""
        current = await self.load()
        if self.down and (current is None or current.key != record.key):
            raise StoreError("the key store is down (simulated)")
        await super().save(record, expected_generation=expected_generation)


@attrs.define
class Process:
    """One rotator on its own client and its own handle on the shared key file."""

    rotator: KeyRotator
    client: AccountClient
    store: DownableFileStore
    fired: list[str] = attrs.field(factory=list)


Spawn = Callable[..., Process]


@pytest.fixture
async def spawn(api: FakeCS2CapAPI, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Spawn]:
    """Make processes sharing one key file, each with the fake's first root key."""
    made: list[Process] = []

    def spawn_(*, token: bool = False) -> Process:
        client = AccountClient(api.root_key, base_url=api.base_url, clock=clock)
        store = DownableFileStore(tmp_path / "key.json")
        rotator = KeyRotator(
            client, store=store, recovery_token=api.session_token if token else None
        )
        process = Process(rotator, client, store)

        def fired(event: RotationEvent) -> None:
            process.fired.append(event.key_id)

        rotator.on_rotate(fired)
        made.append(process)
        return process

    yield spawn_
    for process in made:
        await process.rotator.stop()
        await process.client.aclose()


def reset(path: Path) -> None:
    """Empty the store, as a Redis restarted without persistence does."""
    path.unlink()


async def stored(process: Process) -> KeyRecord:
    """The stored record (which must exist)."""
    record = await FileKeyStore(process.store.path).load()
    assert record is not None
    return record


async def test_a_store_emptied_between_the_reissue_and_the_save_gets_the_new_key_back(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """The key file is deleted after the reissue, before the save: the save is fenced
    (the store is empty), and the new key is written back as generation 1 of a new
    lineage, held, verified and announced. Nothing is dropped, nothing reissued again.
    """
    a = spawn()
    await a.rotator.check()
    before = (await stored(a)).lineage

    async def wipe(step: Step) -> None:
        if step is Step.REISSUED:
            reset(a.store.path)

    after_step(a.rotator, wipe)
    event = await a.rotator.rotate_now()

    record = await stored(a)
    assert api.is_active(record.key)
    assert record.key == a.client.api_key == event.new_key
    assert (record.generation, record.pending) == (1, None)
    assert record.lineage != before
    assert a.fired == [event.key_id]
    assert api.reissues == 1


async def test_a_reset_that_took_an_open_journal_is_recovered_with_the_token(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """A reissue's response is lost (its journal stays open, no token to recover it
    with), then the store is reset, journal and all. A process with the token finds the
    store empty and its key refused; the key in force never authenticated a call, so it
    is lost: recovered with the token and written back. Every process ends on it.
    """
    a, b = spawn(), spawn(token=True)
    await a.rotator.check()
    await b.rotator.check()
    api.faults.drop_after_commit("reissue_key")
    with pytest.raises(RotationError):
        await a.rotator.rotate_now()
    reset(a.store.path)

    await b.rotator.check()
    record = await stored(b)
    assert api.is_active(record.key)
    assert b.client.api_key == record.key
    assert b.rotator.recoveries == 1
    await a.rotator.check()
    assert a.client.api_key == record.key
    assert api.reissues == 2


async def test_after_a_reset_a_used_key_in_force_is_waited_for_not_replaced(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """The store is reset while one process holds the working key and another an old,
    revoked one. The one with the old key (and the token) does not reissue: the key in
    force has been used, so some process holds it and writes it back, which it does. The
    waiting process's own 401 stands meanwhile.
    """
    a, b = spawn(), spawn(token=True)
    await a.rotator.check()
    await b.rotator.check()
    await a.rotator.rotate_now()
    reset(a.store.path)

    with pytest.raises(AuthenticationError):
        await b.rotator.check()
    assert await FileKeyStore(a.store.path).load() is None
    await a.rotator.check()
    await b.rotator.check()
    record = await stored(b)
    assert record.key == a.client.api_key == b.client.api_key
    assert api.is_active(record.key)
    assert (api.reissues, b.rotator.recoveries) == (1, 0)


async def test_an_unsaved_key_is_written_back_into_an_emptied_store(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """The store is down for the save, then comes back empty: the process holding the new
    key writes it back (once, into the empty store), finishes and announces it; another
    process adopts it, and a later rotation is never overwritten by the old key.
    """
    a, b = spawn(), spawn()
    await a.rotator.check()
    await b.rotator.check()
    a.store.down = True
    with pytest.raises(RotationError, match="could not be saved"):
        await a.rotator.rotate_now()
    held = a.client.api_key
    a.store.down = False
    reset(a.store.path)

    await a.rotator.check()
    record = await stored(a)
    assert (record.key, record.generation, record.pending) == (held, 1, None)
    await b.rotator.check()
    event = await b.rotator.rotate_now()
    await a.rotator.check()

    record = await stored(a)
    assert record.key == event.new_key == a.client.api_key
    assert api.is_active(record.key)
    assert record.generation == 2
    assert api.reissues == 2


async def test_a_store_written_again_with_a_revoked_key_takes_the_held_working_one(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """A process holds the only working key, unsaved (the store was down); the store is
    reset and written again, at the very generation the key follows, with the revoked key
    it was reissued from (by hand, or an old process). The process does not adopt the
    revoked key, nor trip on the missing journal: it saves its own over it and announces
    it once.
    """
    a = spawn()
    await a.rotator.check()
    old = await stored(a)
    a.store.down = True
    with pytest.raises(RotationError, match="could not be saved"):
        await a.rotator.rotate_now()
    held = a.client.api_key
    a.store.down = False
    reset(a.store.path)
    rewritten = attrs.evolve(old, lineage="written-by-hand", pending=None)
    await FileKeyStore(a.store.path).save(rewritten, expected_generation=None)

    await a.rotator.check()
    record = await stored(a)
    assert (record.key, record.lineage, record.pending) == (held, "written-by-hand", None)
    assert a.client.api_key == held
    assert held is not None
    assert api.is_active(held)
    assert a.fired == [record.key_id]
    assert api.reissues == 1


async def test_callbacks_fire_once_per_key_across_a_reset(api: FakeCS2CapAPI, spawn: Spawn) -> None:
    """After a reset, rotations go through generation numbers already seen: each process
    still fires its callbacks for every new key, the rotating one included, once each.
    """
    a, b = spawn(), spawn()
    await a.rotator.check()
    await b.rotator.check()
    first = await a.rotator.rotate_now()
    await b.rotator.check()
    reset(a.store.path)
    await a.rotator.check()
    second = await a.rotator.rotate_now()
    await b.rotator.check()
    await a.rotator.check()

    assert second.generation == first.generation == 2
    assert a.fired == [first.key_id, second.key_id]
    assert b.fired == [first.key_id, second.key_id]


async def test_a_rotation_stopped_after_its_save_is_announced_at_the_next_look(
    api: FakeCS2CapAPI, spawn: Spawn
) -> None:
    """`stop()` lands after the save: another process finishes the rotation. The stopped
    process holds that key and, at its next look, fires its callbacks for it, once.
    """
    a, b = spawn(), spawn()
    await a.rotator.check()
    await b.rotator.check()
    stopping: list[asyncio.Task[None]] = []

    async def stop_after_save(step: Step) -> None:
        if step is Step.SAVED:
            stopping.append(asyncio.ensure_future(a.rotator.stop()))

    after_step(a.rotator, stop_after_save)
    with pytest.raises(asyncio.CancelledError):
        await a.rotator.rotate_now()
    await asyncio.gather(*stopping)
    key_id = (await stored(a)).key_id
    assert a.fired == []

    await b.rotator.check()
    assert b.fired == [key_id]
    await a.rotator.check()
    await a.rotator.check()
    assert a.fired == [key_id]


async def test_a_fenced_key_kept_aside_survives_the_store_being_emptied_again(
    api: FakeCS2CapAPI, spawn: Spawn, clock: FakeClock
) -> None:
    """A journals; the store is reset and B writes it again (another lineage, the same
    generation); A's reissue then revokes B's key and A's save is fenced, so A keeps its
    new key aside in the store. The store is emptied again, kept-aside key and all: A
    still holds the key, and its next check writes it back. No second reissue.
    """
    a, b = spawn(), spawn()
    await a.rotator.check()
    await b.rotator.check()

    async def reset_and_rewrite(step: Step) -> None:
        if step is Step.JOURNALED:
            reset(a.store.path)
            # B initialises the emptied store with its key (A holds the rotation lock, so
            # this is the write B's initialisation makes, made here directly).
            fresh = successor(None, b.rotator.current_key, api.root_key_id, at=clock.now())
            await FileKeyStore(a.store.path).save(fresh, expected_generation=None)

    remove = after_step(a.rotator, reset_and_rewrite)
    with pytest.raises(RotationError, match="fenced off"):
        await a.rotator.rotate_now()
    remove()
    new_key = a.client.api_key
    assert new_key is not None
    assert api.is_active(new_key)
    assert new_key in (await stored(a)).kept_aside
    reset(a.store.path)  # the kept-aside copy goes with it

    await a.rotator.check()

    record = await stored(a)
    assert record.key == new_key == a.rotator.current_key
    assert api.is_active(record.key)
    assert api.reissues == 1
    await b.rotator.check()
    assert b.rotator.current_key == new_key
