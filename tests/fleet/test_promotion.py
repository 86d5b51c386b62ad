"""A key kept aside after a fenced save comes back into use when it is the live one.

The store holds a key that no longer authenticates (a later reissue revoked it), and the
key that reissue made sits in `kept_aside`: a 401 on an ordinary call, or the resume of an
open journal, promotes it to the next generation instead of reissuing again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import attrs
import pytest

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FakeClock,
    Hooks,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    ResponseEvent,
    RotationEvent,
    SecretKey,
)
from cs2cap_account.stores import PendingRotation
from cs2cap_account.testing import FakeCS2CapAPI


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time shared by the fake and the clients: backoff waits cost nothing."""
    return FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeCS2CapAPI]:
    """A running fake API on virtual time, without rate limiting."""
    async with FakeCS2CapAPI(rate_limits=False, clock=clock.monotonic, wall_clock=clock.now) as f:
        yield f


async def reissue_behind_the_store(api: FakeCS2CapAPI, clock: FakeClock) -> SecretKey:
    """Reissue with the session JWT, as a fenced rotator did: the old key dies, the new one
    exists only where that rotator kept it.
    """
    async with AccountClient(
        session_token=api.session_token, base_url=api.base_url, clock=clock
    ) as rescuer:
        return (await rescuer.reissue_key(use_new_key=False)).key


def stored(
    generation: int,
    key: SecretKey,
    kept: tuple[SecretKey, ...],
    clock: FakeClock,
    pending_from: int | None = None,
) -> KeyRecord:
    """A record holding `key` at `generation` with `kept` aside, and a journal if asked."""
    pending = None
    if pending_from is not None:
        pending = PendingRotation(
            from_generation=pending_from,
            previous_key_id="key_before",
            reason="scheduled",
            started_at=clock.now(),
        )
    return KeyRecord(
        generation=generation,
        key=key,
        key_id=f"key_{generation}",
        saved_at=clock.now(),
        pending=pending,
        kept_aside=kept,
    )


async def test_a_401_promotes_the_live_kept_aside_key(api: FakeCS2CapAPI, clock: FakeClock) -> None:
    """The stored key is dead and the kept-aside one live: the call that got the 401 is
    retried with the kept-aside key, which the store now holds as the next generation;
    no reissue happens, and the rotator announces the new generation.
    """
    dead = api.root_key
    dead_aside = SecretKey("sk_live_root_" + "9" * 24 + "ZZZZ")  # never issued: 401 too
    store = MemoryKeyStore(stored(3, dead, (dead_aside,), clock))
    async with AccountClient(dead, base_url=api.base_url, clock=clock) as client:
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        events: list[RotationEvent] = []
        rotator.on_rotate(events.append)
        await rotator.check()  # this process now holds generation 3, its starting key
        assert (rotator.generation, events) == (3, [])
        live = await reissue_behind_the_store(api, clock)
        fenced = await store.load()  # a fenced rotator keeps its key aside
        assert fenced is not None
        await store.save(attrs.evolve(fenced, kept_aside=(dead_aside, live)), expected_generation=3)

        info = await client.get_key()
        await rotator.stop()  # waits for the background catch-up to finish

        assert info.id == api.root_key_id
        assert client.api_key == live
    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.key_id) == (4, live, api.root_key_id)
    assert record.kept_aside == (dead_aside,)
    assert api.reissues == 1
    assert [(e.generation, e.key_id) for e in events] == [(4, api.root_key_id)]


async def test_a_401_with_only_dead_keys_aside_lets_the_401_stand(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """No kept-aside key authenticates either: the 401 stands, nothing is saved or reissued."""
    dead = api.root_key
    await reissue_behind_the_store(api, clock)  # the live key is nowhere in the store
    before = stored(3, dead, (SecretKey("sk_live_root_" + "8" * 24 + "YYYY"),), clock)
    store = MemoryKeyStore(before)
    async with AccountClient(dead, base_url=api.base_url, clock=clock) as client:
        KeyRotator(client, store=store)
        with pytest.raises(AuthenticationError):
            await client.get_key()
    assert await store.load() == before
    assert api.reissues == 1


@pytest.mark.parametrize(
    ("generation", "pending_from"),
    [(3, 3), (4, 3)],
    ids=["journal-before-save", "journal-after-save"],
)
async def test_resuming_a_journal_promotes_the_live_kept_aside_key(
    api: FakeCS2CapAPI, clock: FakeClock, generation: int, pending_from: int
) -> None:
    """An open journal over a dead stored key: with a live key aside, resuming promotes it
    and finishes the rotation with it, instead of reissuing with the recovery token.
    """
    dead = api.root_key
    live = await reissue_behind_the_store(api, clock)
    store = MemoryKeyStore(stored(generation, dead, (live,), clock, pending_from=pending_from))
    async with AccountClient(dead, base_url=api.base_url, clock=clock) as client:
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        event = await rotator.check()
        assert client.api_key == live
    assert event is not None
    assert (event.generation, event.key_id, event.reason) == (
        generation + 1,
        api.root_key_id,
        "scheduled",
    )
    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.kept_aside, record.pending) == (
        generation + 1,
        live,
        (),
        None,
    )
    assert api.reissues == 1
    assert rotator.recoveries == 0


async def test_resuming_with_no_live_key_aside_still_recovers(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """Journal open, stored key dead, kept-aside key dead as well: the key is truly lost,
    so the recovery token reissues (once), and the dead key stays aside.
    """
    dead = api.root_key
    dead_aside = await reissue_behind_the_store(api, clock)
    await reissue_behind_the_store(api, clock)  # revokes dead_aside; its key is lost
    store = MemoryKeyStore(stored(3, dead, (dead_aside,), clock, pending_from=3))
    async with AccountClient(dead, base_url=api.base_url, clock=clock) as client:
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        event = await rotator.check()
    assert event is not None
    record = await store.load()
    assert record is not None
    assert record.generation == 4
    assert api.is_active(record.key)
    assert record.kept_aside == (dead_aside,)
    assert api.reissues == 3
    assert rotator.recoveries == 1


async def test_a_promotion_that_cannot_probe_lets_the_401_stand_until_the_next_one(
    api: FakeCS2CapAPI, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """If the keys cannot be probed (the API answers 503), nothing is promoted: the 401
    stands, the store is unchanged, and the log says why without showing a key. The next
    401, with the API back, promotes the live key.
    """
    dead = api.root_key
    live = await reissue_behind_the_store(api, clock)
    before = stored(3, dead, (live,), clock)
    store = MemoryKeyStore(before)

    api_goes_down = [True]

    def api_down_after_a_401(event: ResponseEvent) -> None:
        if event.status_code == 401 and api_goes_down[0]:
            api.faults.fail("get_key", times=20)

    hooks = Hooks(on_response=[api_down_after_a_401])
    async with AccountClient(dead, base_url=api.base_url, clock=clock, hooks=hooks) as client:
        rotator = KeyRotator(client, store=store)
        with caplog.at_level(logging.WARNING), pytest.raises(AuthenticationError):
            await client.get_key()
        assert await store.load() == before
        assert "could not promote a kept-aside key" in caplog.text
        assert live.reveal() not in caplog.text
        assert dead.reveal() not in caplog.text

        api_goes_down[0] = False
        api.faults.clear()
        await client.get_key()
        await rotator.stop()
    record = await store.load()
    assert record is not None
    assert (record.generation, record.key) == (4, live)
