"""Restarts after a crash, and processes that follow each other's rotations."""

from __future__ import annotations

import asyncio

import pytest

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FakeClock,
    Hooks,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RequestEvent,
    RotationError,
    RotationEvent,
)
from cs2cap_account.stores import PendingRotation
from cs2cap_account.testing import FakeCS2CapAPI


async def journaled_store(api: FakeCS2CapAPI, clock: FakeClock) -> MemoryKeyStore:
    """A store as a crash right after step 2 leaves it: generation 1, journal open."""
    pending = PendingRotation(
        from_generation=1, previous_key_id=api.root_key_id, reason="manual", started_at=clock.now()
    )
    record = KeyRecord(
        generation=1,
        key=api.root_key,
        key_id=api.root_key_id,
        saved_at=clock.now(),
        pending=pending,
    )
    return MemoryKeyStore(record)


async def test_crash_before_reissue_closes_the_journal_without_reissuing(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Journal open, stored key still valid: the reissue never happened; nothing reissued."""
    store = await journaled_store(api, clock)
    assert await KeyRotator(client, store=store).check() is None
    record = await store.load()
    assert record is not None
    assert record.pending is None
    assert api.reissues == 0


async def test_crash_after_reissue_before_save_recovers_with_the_token(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Journal open, stored key revoked (the reissue happened, its key died with the
    process): the restarted rotator recovers through the session JWT.
    """
    store = await journaled_store(api, clock)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as crashed:
        await crashed.reissue_key()  # the response the crashed process never saved
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    announced: list[RotationEvent] = []
    rotator.on_rotate(announced.append)

    event = await rotator.check()

    assert event is not None
    assert api.reissues == 2
    assert rotator.recoveries == 1
    assert [e.generation for e in announced] == [2]
    assert api.is_active(client.api_key or "")
    record = await store.load()
    assert record is not None
    assert (record.generation, record.pending, record.key) == (2, None, api.root_key)


async def test_a_recovery_goes_through_the_callers_client_settings(
    api: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """The recovery's requests (the session JWT's look at the active key, its reissue) are
    sent through a copy of the rotator's client: the caller's `on_request` hook sees them.
    """
    store = await journaled_store(api, clock)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as crashed:
        await crashed.reissue_key()  # the response the crashed process never saved
    seen: list[RequestEvent] = []
    async with AccountClient(
        api.root_key, base_url=api.base_url, clock=clock, hooks=Hooks(on_request=[seen.append])
    ) as client:
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        await rotator.check()
    assert rotator.recoveries == 1
    reissues = [e for e in seen if e.method == "POST" and e.path.endswith("/key/reissue")]
    assert len(reissues) == 1
    assert api.reissues == 2


async def test_crash_after_reissue_without_token_reports_and_halts(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The same crash without a recovery token: a RotationError, and no reissue."""
    store = await journaled_store(api, clock)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as crashed:
        await crashed.reissue_key()
    with pytest.raises(RotationError, match="recovery_token"):
        await KeyRotator(client, store=store).check()
    assert api.reissues == 1


async def test_crash_after_save_finishes_the_announcement(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """New key saved, journal still open: the restarted rotator verifies it, fires the
    callbacks once, and closes the journal, without reissuing.
    """
    old_id = api.root_key_id
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as crashed:
        new = await crashed.reissue_key()
    pending = PendingRotation(
        from_generation=1, previous_key_id=old_id, reason="max_age", started_at=clock.now()
    )
    store = MemoryKeyStore(
        KeyRecord(generation=2, key=new.key, key_id=new.id, saved_at=clock.now(), pending=pending)
    )
    rotator = KeyRotator(client, store=store)
    announced: list[RotationEvent] = []
    rotator.on_rotate(announced.append)

    await rotator.check()
    await rotator.check()

    assert [(e.generation, e.reason, e.previous_key_id) for e in announced] == [
        (2, "max_age", old_id)
    ]
    assert client.api_key == new.key
    assert api.reissues == 1
    record = await store.load()
    assert record is not None
    assert record.pending is None


async def test_unauthorized_call_reloads_the_stored_key_and_never_reissues(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Process B's next call after A rotated gets a 401, reloads the key from the shared
    store, succeeds, and B's callbacks fire once, as an adoption.
    """
    store = MemoryKeyStore()
    leader = KeyRotator(client, store=store)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as other:
        follower = KeyRotator(other, store=store)
        await follower.check()
        adopted: list[RotationEvent] = []
        follower.on_rotate(adopted.append)

        event = await leader.rotate_now()
        info = await other.get_key()

        assert info.id == event.key_id
        assert other.api_key == event.new_key
        for _ in range(50):
            if adopted:
                break
            await asyncio.sleep(0.01)
        await follower.stop()
    assert [(e.generation, e.reason) for e in adopted] == [(2, "adopted")]
    assert api.reissues == 1


async def test_unauthorized_without_a_newer_key_stands(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """A 401 when the store holds nothing newer is raised as it is."""
    KeyRotator(client, store=MemoryKeyStore())
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as other:
        await other.reissue_key()
    with pytest.raises(AuthenticationError) as caught:
        await client.get_key()
    assert caught.value.code == "AUTH_API_KEY_REVOKED"
    assert api.reissues == 1


async def test_rotate_now_adopts_a_key_another_process_already_rotated_to(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """rotate_now() means 'away from the key I hold': if the store is ahead, adopt it."""
    store = MemoryKeyStore()
    leader = KeyRotator(client, store=store)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as other:
        follower = KeyRotator(other, store=store)
        await follower.check()
        rotated = await leader.rotate_now()
        adopted = await follower.rotate_now()
    assert api.reissues == 1
    assert adopted.reason == "adopted"
    assert (adopted.new_key, adopted.generation) == (rotated.new_key, 2)
