"""The `KeyStore` contract, checked the same way on every store, encrypted or not."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest

from cs2cap_account import StaleGenerationError, StoreError
from cs2cap_account._secret import SecretKey
from cs2cap_account.stores import (
    FileKeyStore,
    KeyRecord,
    KeyStore,
    MemoryKeyStore,
    PendingRotation,
    RedisKeyStore,
)

from ._support import ROOT_2, ROOT_3, T0, full_record, leaked, simple_record

Opener = Callable[[], KeyStore]


# Every store, and the two that can encrypt with a cipher. The Redis ones use the fleet
# tests' redis-server (skipped, outside CI, where there is none).
STORES = ["memory", "file", "file-encrypted", "redis", "redis-encrypted"]


@pytest.fixture(params=STORES)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Open a handle on one store: each call gives a new handle on the same stored state.

    For the file and Redis stores every handle is a new store object (a new Redis
    connection pool) on the same path or name, so what one reads back was really written
    and read through the store's own format; the memory store has one handle only.
    """
    kind: str = request.param
    handles: list[KeyStore] = []
    memory = MemoryKeyStore()
    cipher = None
    if kind.endswith("-encrypted"):
        pytest.importorskip("cryptography")
        from cryptography.fernet import Fernet

        cipher = Fernet.generate_key()
    url = ""
    name = f"contract-{uuid.uuid4().hex[:12]}"
    if kind.startswith("redis"):
        url = request.getfixturevalue("redis_server").url

    def open_() -> KeyStore:
        store: KeyStore
        if kind == "memory":
            store = memory
        elif kind.startswith("file"):
            store = FileKeyStore(tmp_path / "k.json", cipher=cipher)
        else:
            store = RedisKeyStore(url, name=name, cipher=cipher)
        handles.append(store)
        return store

    yield open_
    for store in handles:
        await store.aclose()


async def test_an_empty_store_loads_none(open_store: Opener) -> None:
    """A store nothing was saved in loads as None (not an error, not an empty record)."""
    assert await open_store().load() is None


async def test_the_first_save_expects_no_generation(open_store: Opener) -> None:
    """`expected_generation=None` writes into an empty store, and the record reads back."""
    record = simple_record(1)
    await open_store().save(record, expected_generation=None)
    assert await open_store().load() == record


async def test_each_save_is_a_compare_and_set_on_the_generation(open_store: Opener) -> None:
    """Saves chained on the stored generation succeed, including one at the same generation."""
    store = open_store()
    await store.save(simple_record(1), expected_generation=None)
    await store.save(simple_record(2, ROOT_2), expected_generation=1)
    # Rewriting the current generation (how a journal is opened and closed) is allowed.
    rewritten = attrs.evolve(simple_record(2, ROOT_2), key_id="key_2_rewritten")
    await store.save(rewritten, expected_generation=2)
    assert await open_store().load() == rewritten


async def test_a_stale_generation_is_refused_and_changes_nothing(open_store: Opener) -> None:
    """A save based on an older generation raises `StaleGenerationError` with both numbers.

    The stored record is exactly what it was, and neither the message nor the error's
    attributes carry a plaintext key.
    """
    store = open_store()
    await store.save(simple_record(1), expected_generation=None)
    current = simple_record(2, ROOT_2)
    await store.save(current, expected_generation=1)

    with pytest.raises(StaleGenerationError) as caught:
        await store.save(simple_record(2, ROOT_3), expected_generation=1)

    assert caught.value.expected_generation == 1
    assert caught.value.stored_generation == 2
    assert leaked(str(caught.value)) == []
    assert await open_store().load() == current


async def test_a_generation_from_the_future_is_refused(open_store: Opener) -> None:
    """Expecting a generation the store has not reached is as wrong as expecting an old one."""
    store = open_store()
    await store.save(simple_record(1), expected_generation=None)
    with pytest.raises(StaleGenerationError) as caught:
        await store.save(simple_record(3, ROOT_3), expected_generation=2)
    assert (caught.value.expected_generation, caught.value.stored_generation) == (2, 1)
    assert await open_store().load() == simple_record(1)


async def test_expecting_an_empty_store_fails_once_a_record_exists(open_store: Opener) -> None:
    """A second "first save" (two processes initialising at once) is fenced off."""
    store = open_store()
    await store.save(simple_record(1), expected_generation=None)
    with pytest.raises(StaleGenerationError) as caught:
        await open_store().save(simple_record(1, ROOT_2), expected_generation=None)
    assert caught.value.stored_generation == 1
    assert await store.load() == simple_record(1)


async def test_expecting_a_generation_of_an_empty_store_fails(open_store: Opener) -> None:
    """A save that expects a generation cannot create the record: the store stays empty."""
    with pytest.raises(StaleGenerationError):
        await open_store().save(simple_record(2), expected_generation=1)
    assert await open_store().load() is None


async def test_a_full_record_round_trips(open_store: Opener) -> None:
    """Every field survives: journal with children, sub-keys, kept-aside keys, offsets."""
    record = full_record()
    await open_store().save(record, expected_generation=None)

    loaded = await open_store().load()

    assert loaded == record
    assert loaded is not None
    assert isinstance(loaded.key, SecretKey)
    assert all(isinstance(key, SecretKey) for key in loaded.kept_aside)
    assert isinstance(loaded.sub_keys["bot"].key, SecretKey)
    assert loaded.pending is not None
    assert isinstance(loaded.pending.children, tuple)
    assert loaded.pending.started_at.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert loaded.saved_at.tzinfo is not None


async def test_concurrent_saves_from_one_generation_have_one_winner(open_store: Opener) -> None:
    """Twenty writers racing from the same generation: exactly one save takes effect."""
    await open_store().save(simple_record(1), expected_generation=None)
    candidates = [attrs.evolve(simple_record(2, ROOT_2), key_id=f"w{i}") for i in range(20)]

    results = await asyncio.gather(
        *(open_store().save(c, expected_generation=1) for c in candidates),
        return_exceptions=True,
    )

    winners = [c for c, r in zip(candidates, results, strict=True) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, StaleGenerationError) for r in results if r is not None)
    assert await open_store().load() == winners[0]


async def test_the_lock_admits_one_holder_at_a_time(open_store: Opener) -> None:
    """A second `lock()` enters only after the first holder has left (ordering by events)."""
    first, second = open_store(), open_store()
    order: list[str] = []
    first_in = asyncio.Event()
    let_first_go = asyncio.Event()

    async def hold_first() -> None:
        async with first.lock():
            order.append("first in")
            first_in.set()
            await let_first_go.wait()
            order.append("first out")

    async def hold_second() -> None:
        await first_in.wait()
        async with second.lock():
            order.append("second in")

    tasks = [asyncio.create_task(hold_first()), asyncio.create_task(hold_second())]
    await asyncio.wait_for(first_in.wait(), 10)
    # Give the second holder every chance to barge in while the first holds the lock.
    done, _ = await asyncio.wait(tasks[1:], timeout=0.2)
    assert not done
    let_first_go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == ["first in", "first out", "second in"]


async def test_the_lock_is_released_when_its_block_raises(open_store: Opener) -> None:
    """A rotation failing inside `lock()` does not leave the lock held."""
    store = open_store()

    async def fail_inside() -> None:
        async with store.lock():
            raise RuntimeError("rotation failed")

    with pytest.raises(RuntimeError):
        await fail_inside()

    async def take_again() -> None:
        async with open_store().lock():
            pass

    await asyncio.wait_for(take_again(), 10)


async def test_every_store_implements_the_protocol(open_store: Opener) -> None:
    """The stores satisfy the runtime-checkable `KeyStore` protocol."""
    assert isinstance(open_store(), KeyStore)


async def test_repr_shows_no_key(open_store: Opener) -> None:
    """`repr(store)` never contains a stored plaintext key."""
    store = open_store()
    await store.save(full_record(), expected_generation=None)
    assert leaked(repr(store)) == []


async def test_every_save_reads_back_equal_through_a_new_handle(open_store: Opener) -> None:
    """What `save()` wrote, `load()` returns equal: the proof a rotator makes before a reissue.

    Through a chain a rotation walks (the journal opened, the new key saved with it, the
    journal closed), each record read back by a new handle is the record saved.
    """
    store = open_store()
    first = simple_record(1)
    opened = attrs.evolve(
        first,
        pending=PendingRotation(
            from_generation=1, previous_key_id="key_1", reason="manual", started_at=T0
        ),
    )
    saved_with_journal = attrs.evolve(simple_record(2, ROOT_2), pending=opened.pending)
    closed = simple_record(2, ROOT_2)
    chain = [(first, None), (opened, 1), (saved_with_journal, 1), (closed, 2), (full_record(), 2)]
    for record, expected in chain:
        await store.save(record, expected_generation=expected)
        assert await open_store().load() == record


def _journal(reason: object) -> PendingRotation:
    return PendingRotation(
        from_generation=1,
        previous_key_id="key_1",
        reason=reason,  # type: ignore[arg-type]  # the wrong type on purpose
        started_at=T0,
    )


# Records no store may write: each would make the store unreadable, or read back different.
BAD_RECORDS: dict[str, KeyRecord] = {
    "reason None": attrs.evolve(simple_record(2, ROOT_2), pending=_journal(None)),
    "reason an int": attrs.evolve(simple_record(2, ROOT_2), pending=_journal(3)),
    "key id an int": attrs.evolve(simple_record(2, ROOT_2), key_id=2),  # type: ignore[arg-type]
    "generation NaN": attrs.evolve(simple_record(2, ROOT_2), generation=math.nan),  # type: ignore[arg-type]
    "generation a bool": attrs.evolve(simple_record(2, ROOT_2), generation=True),
    "key a plain str": attrs.evolve(simple_record(2, ROOT_2), key=ROOT_2.reveal()),  # type: ignore[arg-type]
    "naive saved_at": attrs.evolve(simple_record(2, ROOT_2), saved_at=T0.replace(tzinfo=None)),
    "kept-aside a str": attrs.evolve(simple_record(2, ROOT_2), kept_aside=("sk_live_x",)),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("bad", list(BAD_RECORDS), ids=list(BAD_RECORDS))
async def test_a_record_of_the_wrong_types_is_never_written(open_store: Opener, bad: str) -> None:
    """A record with a field of the wrong type raises `StoreError` before anything is written.

    The store still holds, and reads back, what it held before; and the message shows no key.
    """
    store = open_store()
    await store.save(simple_record(1), expected_generation=None)

    with pytest.raises(StoreError) as caught:
        await store.save(BAD_RECORDS[bad], expected_generation=1)

    assert not isinstance(caught.value, StaleGenerationError)
    assert leaked(str(caught.value)) == []
    assert await open_store().load() == simple_record(1)
    await store.save(simple_record(2, ROOT_2), expected_generation=1)
    assert await open_store().load() == simple_record(2, ROOT_2)


async def test_something_other_than_a_record_is_a_type_error(open_store: Opener) -> None:
    """`save()` of a dict (or anything not a `KeyRecord`) is a `TypeError`, and writes nothing."""
    with pytest.raises(TypeError, match="KeyRecord"):
        await open_store().save({"generation": 1}, expected_generation=None)  # type: ignore[arg-type]
    assert await open_store().load() is None


async def test_the_lineage_round_trips(open_store: Opener) -> None:
    """A record's store lineage is written and read back with the rest of it."""
    record = attrs.evolve(full_record(), lineage="0123456789abcdef")
    await open_store().save(record, expected_generation=None)
    loaded = await open_store().load()
    assert loaded is not None
    assert loaded.lineage == "0123456789abcdef"
    assert loaded == record


async def test_a_save_over_another_lineage_is_stale_at_any_generation(
    open_store: Opener,
) -> None:
    """A store reset and written again repeats generation numbers under a new lineage: a
    save chained on the old lineage is refused even where the generation matches, and
    the stored record is left as it was.
    """
    store = open_store()
    current = attrs.evolve(simple_record(1), lineage="new")
    await store.save(current, expected_generation=None)
    held_up = attrs.evolve(simple_record(2, ROOT_2), lineage="old")
    with pytest.raises(StaleGenerationError, match="another lineage"):
        await store.save(held_up, expected_generation=1)
    assert await open_store().load() == current
    await store.save(attrs.evolve(held_up, lineage="new"), expected_generation=1)
