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


async def rotated_then_revoked_unseen(
    api: FakeCS2CapAPI, rotator: KeyRotator, clock: FakeClock
) -> str:
    """Rotate once, then reissue with the session JWT behind the rotator's back.

    That is what a recovery leaves when its first session-JWT reissue timed out, was
    found not to have happened, and landed after the retry: the key the retry returned
    (saved, verified, announced) is revoked by a reissue whose key no one received, and
    no journal says so. Returns the id of the revoked, stored key.
    """
    saved = await rotator.rotate_now()
    async with AccountClient(
        session_token=api.session_token, base_url=api.base_url, clock=clock
    ) as late:
        await late.reissue_key()  # the late first attempt: its key reaches no one
    assert not api.is_active(saved.new_key)
    return saved.key_id


async def test_a_stored_key_revoked_by_an_unseen_reissue_is_recovered(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The stored key, held here, is refused and no journal is open; the key in force was
    never used: the next check recovers with the token, saves, verifies and announces
    the new key, instead of letting the 401 stand for ever.
    """
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    announced: list[RotationEvent] = []
    rotator.on_rotate(announced.append)
    revoked = await rotated_then_revoked_unseen(api, rotator, clock)

    event = await rotator.check()

    assert event is not None
    assert (event.reason, event.previous_key_id, event.generation) == ("recovery", revoked, 3)
    assert rotator.recoveries == 1
    assert api.reissues == 3  # the rotation, the unseen one, the recovery
    assert api.is_active(client.api_key or "")
    record = await store.load()
    assert record is not None
    assert (record.generation, record.pending, record.key) == (3, None, api.root_key)
    assert [e.reason for e in announced] == ["manual", "recovery"]
    assert await rotator.check() is None  # settled: nothing more is reissued
    assert api.reissues == 3


async def test_an_unseen_reissue_whose_key_was_used_is_not_recovered_over(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The same, but the key in force has authenticated a call: someone holds it, so no
    reissue takes it from them; the refusal stands until that key is stored.
    """
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    await rotated_then_revoked_unseen(api, rotator, clock)
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as holder:
        await holder.get_key()  # whoever received the key uses it

    with pytest.raises(AuthenticationError) as caught:
        await rotator.check()

    assert caught.value.code == "AUTH_API_KEY_REVOKED"
    assert (api.reissues, rotator.recoveries) == (2, 0)
    record = await store.load()
    assert record is not None
    assert record.pending is None  # no journal left open by the look


async def test_an_unseen_reissue_without_a_token_lets_the_refusal_stand(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Without a recovery token nothing can replace the key: the check raises the 401 as
    it is, reissues nothing, and leaves the store as it was.
    """
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store)
    revoked = await rotated_then_revoked_unseen(api, rotator, clock)

    with pytest.raises(AuthenticationError):
        await rotator.check()

    assert api.reissues == 2
    record = await store.load()
    assert record is not None
    assert (record.key_id, record.pending) == (revoked, None)


async def test_a_recovery_from_an_unseen_reissue_re_creates_the_stored_children(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The revoked key cannot list its children (the unseen reissue revoked them too):
    they are re-created by the names the store recorded, under the recovered key.
    """
    await client.sub_keys.create("bot")
    rotator = KeyRotator(
        client, store=MemoryKeyStore(), recovery_token=api.session_token, recreate_sub_keys=True
    )
    await rotated_then_revoked_unseen(api, rotator, clock)

    event = await rotator.check()

    assert event is not None
    assert set(event.sub_keys) == {"bot"}
    assert event.sub_key_errors == {}
    assert api.is_active(event.sub_keys["bot"].key)
