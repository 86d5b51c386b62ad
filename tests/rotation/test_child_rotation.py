"""Child keys on their own schedule: one child rotates, the root and the others stay."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from cs2cap_account import (
    AccountClient,
    ChildRotationEvent,
    FakeClock,
    KeyRotator,
    MemoryKeyStore,
    RotationError,
    RotationEvent,
    RotationFailed,
    RotationStage,
)
from cs2cap_account.rotation import Step
from cs2cap_account.sinks import ChildKeySink, SinkError
from cs2cap_account.testing import FakeCS2CapAPI, after_step

WEEK = dt.timedelta(days=7)
DAY = 86_400.0


class Crash(BaseException):
    """Raised by a step hook: the process dies there (nothing below it runs)."""


async def _stored_children(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, *names: str
) -> KeyRotator:
    """The store holds the root key and the children `names`, re-created by a rotation."""
    for name in names:
        api.add_child_key(name)
    rotator = KeyRotator(client, store=store, recreate_sub_keys=True)
    await rotator.rotate_now()
    return rotator


async def test_a_due_child_is_reissued_through_its_route_and_nothing_else_moves(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """With `child_max_age`, a check reissues the one child older than it: through
    `POST /account/sub-keys/{id}/reissue`, with no root reissue; the root key and the
    other child still authenticate; the new child is saved, then verified with its own
    key, then announced once, to `on_child_rotate` and `events(children=True)`.
    """
    await _stored_children(api, client, store, "bot", "ci")
    clock.advance(8 * DAY)
    young = await KeyRotator(client, store=store).rotate_child_now("ci")  # "ci" is new now
    before = await store.load()
    assert before is not None
    root_reissues, requests = api.reissues, api.requests.copy()

    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)
    await rotator.check()

    after = await store.load()
    assert after is not None
    assert api.reissues == root_reissues
    assert api.requests["reissue_sub_key"] - requests["reissue_sub_key"] == 1
    assert api.child_reissues["bot"] == 1
    assert api.child_reissues["ci"] == 1  # the rotate_child_now above, only
    assert (after.generation, after.key, after.key_id) == (
        before.generation,
        before.key,
        before.key_id,
    )
    assert after.sub_keys["ci"] == before.sub_keys["ci"] == young_entry(young, before)
    assert after.sub_keys["bot"].id != before.sub_keys["bot"].id
    assert after.sub_keys["bot"].generation == before.sub_keys["bot"].generation + 1
    assert after.child_rotations == {}
    assert api.is_active(after.key) and api.is_active(after.sub_keys["ci"].key)
    assert api.is_active(after.sub_keys["bot"].key)
    assert not api.is_active(before.sub_keys["bot"].key)
    [event] = told
    assert (event.name, event.key_id, event.previous_key_id, event.reason) == (
        "bot",
        after.sub_keys["bot"].id,
        before.sub_keys["bot"].id,
        "max_age",
    )
    assert event.new_key == after.sub_keys["bot"].key
    assert rotator.child_keys["bot"] == event.new_key
    assert rotator.child_keys["ci"] == after.sub_keys["ci"].key

    await rotator.check()  # nothing more is due
    assert api.child_reissues["bot"] == 1
    assert len(told) == 1


def young_entry(event: ChildRotationEvent, record: object) -> object:
    """The stored entry a `rotate_child_now()` event describes (for an equality check)."""
    from cs2cap_account.stores._record import KeyRecord

    assert isinstance(record, KeyRecord)
    entry = record.sub_keys[event.name]
    assert entry.key == event.new_key and entry.id == event.key_id
    return entry


async def test_a_named_child_not_in_the_store_is_found_by_name_and_stored(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """`children=["ci"]` for a child the store never held: the check lists the children,
    finds the one named "ci", and once it is older than `child_max_age` rotates it and
    stores its key (generation 1). A child not named is left alone.
    """
    ci = api.add_child_key("ci")
    other = api.add_child_key("other")
    rotator = KeyRotator(client, store=store, child_max_age=WEEK, children=["ci"])
    await rotator.check()
    assert api.child_reissues == {}
    api.age_child_key(ci.key_id, 8 * dt.timedelta(days=1))
    api.age_child_key(other.key_id, 8 * dt.timedelta(days=1))

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert dict(api.child_reissues) == {"ci": 1}
    assert list(record.sub_keys) == ["ci"]
    assert record.sub_keys["ci"].generation == 1
    assert api.is_active(record.sub_keys["ci"].key) and api.is_active(other.key)
    assert not api.is_active(ci.key)


async def test_a_child_reissue_whose_answer_is_dropped_is_recovered_with_the_root_key(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """The reissue takes effect and its answer is lost: the old child is probed (gone),
    and the child it made is found by name and reissued once more, with the root key:
    no session token (the rotator has no recovery token), no root reissue.
    """
    await _stored_children(api, client, store, "bot")
    before = await store.load()
    assert before is not None
    root_reissues = api.reissues
    clock.advance(8 * DAY)
    api.faults.drop_after_commit("reissue_sub_key")
    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)

    await rotator.check()

    after = await store.load()
    assert after is not None
    assert api.reissues == root_reissues
    assert api.child_reissues["bot"] == 2  # the lost one, and its recovery
    assert api.is_active(after.sub_keys["bot"].key)
    assert after.child_rotations == {}
    assert [e.key_id for e in told] == [after.sub_keys["bot"].id]


@pytest.mark.parametrize("dies_after", [Step.CHILD_SAVED, Step.CHILD_VERIFIED])
async def test_a_crash_after_the_saved_child_reissue_is_finished_without_reissuing(
    api: FakeCS2CapAPI,
    client: AccountClient,
    store: MemoryKeyStore,
    clock: FakeClock,
    dies_after: Step,
) -> None:
    """The process dies once the new child is saved: the next rotator verifies and
    announces it and closes its journal, with no second reissue of that child.
    """
    await _stored_children(api, client, store, "bot")
    clock.advance(8 * DAY)
    dying = KeyRotator(client, store=store, child_max_age=WEEK)

    async def die(step: Step) -> None:
        if step is dies_after:
            raise Crash

    after_step(dying, die)
    with pytest.raises(Crash):
        await dying.check()
    crashed = await store.load()
    assert crashed is not None and "bot" in crashed.child_rotations
    assert api.child_reissues["bot"] == 1

    restarted = KeyRotator(client, store=store, child_max_age=WEEK)
    told: list[ChildRotationEvent] = []
    restarted.on_child_rotate(told.append)
    async with restarted:
        pass
    await restarted.check()

    after = await store.load()
    assert after is not None
    assert api.child_reissues["bot"] == 1
    assert after.child_rotations == {}
    assert after.sub_keys["bot"] == crashed.sub_keys["bot"]
    assert [e.key_id for e in told] == [after.sub_keys["bot"].id]


async def test_a_crash_between_the_child_reissue_and_its_save_is_recovered_once(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """The process dies holding the new child's key only in memory: the journal says a
    rotation was under way, the old child is gone, so the next rotator reissues the child
    that reissue made (one more child reissue, no root reissue) and stores that.
    """
    await _stored_children(api, client, store, "bot")
    clock.advance(8 * DAY)
    root_reissues = api.reissues
    dying = KeyRotator(client, store=store, child_max_age=WEEK)

    async def die(step: Step) -> None:
        if step is Step.CHILD_REISSUED:
            raise Crash

    after_step(dying, die)
    with pytest.raises(Crash):
        await dying.check()

    restarted = KeyRotator(client, store=store, child_max_age=WEEK)
    await restarted.check()

    after = await store.load()
    assert after is not None
    assert api.reissues == root_reissues
    assert api.child_reissues["bot"] == 2
    assert api.is_active(after.sub_keys["bot"].key)
    assert after.child_rotations == {}


async def test_a_child_whose_reissue_fails_is_reported_and_the_others_go_on(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A refused reissue (a 409: nothing happened) closes that child's journal
    and is told as a `RotationFailed` at the children's stage; the next child rotates.
    """
    await _stored_children(api, client, store, "a", "b")
    clock.advance(8 * DAY)
    api.faults.fail("reissue_sub_key", status=409, code="CONFLICT", detail="busy")
    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    failures: list[object] = []
    rotator.on_failure(failures.append)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)

    await rotator.check()

    record = await store.load()
    assert record is not None
    assert record.child_rotations == {}
    assert [f.stage for f in failures if isinstance(f, RotationFailed)] == [RotationStage.CHILDREN]
    assert [e.name for e in told] == ["b"]


async def test_rotate_child_now_refuses_a_name_no_child_has(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """No child of that name: a `RotationError`, and nothing is reissued."""
    rotator = KeyRotator(client, store=store)
    await rotator.check()
    with pytest.raises(RotationError, match="no single active child key named 'nobody'"):
        await rotator.rotate_child_now("nobody")
    assert api.child_reissues == {}


class _Sink:
    """A key sink that records what it is given; `children` gives it `publish_child`."""

    def __init__(self, name: str, *, fail_children: int = 0) -> None:
        self.name = name
        self.roots: list[str] = []
        self.children: list[tuple[str, str, str]] = []
        self.fail_children = fail_children

    async def publish(self, event: RotationEvent) -> None:
        self.roots.append(event.key_id)


class _ChildSink(_Sink):
    async def publish_child(self, event: ChildRotationEvent) -> None:
        if self.fail_children:
            self.fail_children -= 1
            raise SinkError("the vault is sealed")
        self.children.append((event.name, event.key_id, event.reason))


async def test_a_sink_with_publish_child_gets_child_keys_and_others_do_not(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """A child's new key goes to each sink that has `publish_child` (a `ChildKeySink`),
    never to a root-key sink; a child sink is given the children stored at start, and
    one that failed (three tries) is listed in `sink_errors` and given the child at the
    next check.
    """
    await _stored_children(api, client, store, "bot")
    first = await store.load()
    assert first is not None
    roots_only, with_children = _Sink("roots"), _ChildSink("children")
    rotator = KeyRotator(client, store=store, child_max_age=WEEK, sinks=[roots_only, with_children])
    assert isinstance(with_children, ChildKeySink) and not isinstance(roots_only, ChildKeySink)
    told: list[ChildRotationEvent] = []
    rotator.on_child_rotate(told.append)
    await rotator.check()
    assert with_children.children == [("bot", first.sub_keys["bot"].id, "republished")]

    clock.advance(8 * DAY)
    with_children.fail_children = 3
    await rotator.check()
    [event] = told
    assert [failure.sink for failure in event.sink_errors] == ["children"]
    assert len(with_children.children) == 1

    await rotator.check()
    record = await store.load()
    assert record is not None
    assert with_children.children[1:] == [("bot", record.sub_keys["bot"].id, "republished")]
    assert roots_only.children == [] and roots_only.roots == with_children.roots
    assert roots_only.roots == [record.key_id]
    assert api.child_reissues["bot"] == 1


async def test_events_with_children_yields_both_kinds_in_order_and_plain_events_roots_only(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """`events(children=True)` yields root and child events as they are told; `events()`
    never yields a child's key, so a consumer of root keys cannot take one for the root.
    """
    api.add_child_key("bot")
    rotator = KeyRotator(client, store=store, recreate_sub_keys=True)
    both = rotator.events(children=True)
    plain = rotator.events()
    with_failures = rotator.events(children=True, failures=True)
    both_next = asyncio.ensure_future(anext(both))
    plain_next = asyncio.ensure_future(anext(plain))
    failures_next = asyncio.ensure_future(anext(with_failures))
    await asyncio.sleep(0)

    root = await rotator.rotate_now()
    assert await both_next == root == await plain_next == await failures_next
    plain_next = asyncio.ensure_future(anext(plain))
    child = await rotator.rotate_child_now("bot")
    assert await anext(both) == child == await anext(with_failures)
    await asyncio.sleep(0)
    assert not plain_next.done()
    plain_next.cancel()
    api.faults.fail("reissue_sub_key", status=409, code="CONFLICT", detail="busy")
    with pytest.raises(RotationError):
        await rotator.rotate_child_now("bot")
    failure = await anext(with_failures)
    assert isinstance(failure, RotationFailed) and failure.stage is RotationStage.CHILDREN
    for stream in (both, plain, with_failures):
        await stream.aclose()


async def test_a_child_key_rotated_on_its_own_carries_its_generation_through_a_root_rotation(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Generations count a child's keys: 1 when first re-created, 2 after its own
    rotation, 3 when the next root rotation re-creates it (a root reissue revokes it).
    """
    rotator = await _stored_children(api, client, store, "bot")
    assert (await rotator.rotate_child_now("bot")).generation == 2
    event = await rotator.rotate_now()
    assert event.sub_keys["bot"].key_info.name == "bot"
    record = await store.load()
    assert record is not None
    assert record.sub_keys["bot"].generation == 3
    assert rotator.child_keys["bot"] == record.sub_keys["bot"].key


async def test_status_shows_each_stored_child_its_age_due_time_and_open_journal(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore, clock: FakeClock
) -> None:
    """`status().children`: each stored child with its id, generation, age and the time
    `child_max_age` makes it due; a rotation left open by a crash shows as such.
    """
    await _stored_children(api, client, store, "bot")
    clock.advance(DAY)
    rotator = KeyRotator(client, store=store, child_max_age=WEEK)
    record = await store.load()
    assert record is not None
    entry = record.sub_keys["bot"]
    assert entry.info is not None
    [child] = (await rotator.status()).children
    assert (child.name, child.key_id, child.generation, child.journal_open) == (
        "bot",
        entry.id,
        1,
        False,
    )
    assert child.age == clock.now() - entry.info.created_at
    assert child.next_due_at == entry.info.created_at + WEEK

    clock.advance(7 * DAY)

    async def die(step: Step) -> None:
        if step is Step.CHILD_JOURNALED:
            raise Crash

    after_step(rotator, die)
    with pytest.raises(Crash):
        await rotator.check()
    [child] = (await rotator.status()).children
    assert child.journal_open and child.key_id == entry.id
