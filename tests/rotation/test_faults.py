"""Every fault of the fake at every step of a rotation ends safe.

Safe means: the store holds a key that authenticates at the fake, or a RotationError
says so and the old key still works; and never two reissues for one rotation, except
a recovery with the session JWT after a lost response.
"""

from __future__ import annotations

import asyncio

import attrs
import pytest

from cs2cap_account import (
    AccountClient,
    KeyLostError,
    KeyRotator,
    MemoryKeyStore,
    RequestEvent,
    ResponseEvent,
    RotationError,
    SecretKey,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

from ._support import FlakyStore, fail_times, hooked_client


async def stored_key_works(api: FakeCS2CapAPI, store: MemoryKeyStore) -> bool:
    """Whether the store's current key authenticates at the fake."""
    record = await store.load()
    return record is not None and api.is_active(record.key)


async def test_drop_before_the_server_acts_is_retried_once(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """A reissue dropped before the handler ran is probed, retried: exactly one reissue."""
    api.faults.drop("reissue_key")
    event = await KeyRotator(client, store=store).rotate_now()
    assert api.reissues == 1
    assert event.new_key == api.root_key
    assert await stored_key_works(api, store)


async def test_lost_response_is_recovered_with_the_recovery_token(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """After a lost reissue response, the session JWT reissues once more and all is well."""
    api.faults.drop_after_commit("reissue_key")
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    event = await rotator.rotate_now()
    assert api.reissues == 2
    assert rotator.recoveries == 1
    assert event.new_key == api.root_key == client.api_key
    assert await stored_key_works(api, store)


async def test_lost_response_without_recovery_token_stops_and_says_what_to_do(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Without a recovery token: RotationError caused by KeyLostError, and no more reissues."""
    api.faults.drop_after_commit("reissue_key")
    rotator = KeyRotator(client, store=store)
    with pytest.raises(RotationError) as caught:
        await rotator.rotate_now()
    assert isinstance(caught.value.__cause__, KeyLostError)
    message = str(caught.value)
    assert "recovery_token" in message and "session JWT" in message
    assert api.reissues == 1

    with pytest.raises(RotationError):
        await rotator.rotate_now()
    assert await rotator.check() is None
    assert api.reissues == 1, "never loops on reissue"
    record = await store.load()
    assert record is not None and record.pending is not None, "the journal stays open"


async def test_server_errors_on_verify_leave_the_new_key_in_force(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Persistent 5xx on the verification GET: the saved key stands; no second reissue."""

    def after_reissue(event: ResponseEvent) -> None:
        if event.path == "/account/key/reissue":
            api.faults.fail("get_key", status=503, times=20)

    async with hooked_client(api, client, on_response=[after_reissue]) as hooked:
        event = await KeyRotator(hooked, store=store).rotate_now()
    assert api.reissues == 1
    assert await stored_key_works(api, store)
    assert event.new_key == api.root_key


async def test_unauthorized_on_verify_is_retried_as_propagation_delay(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Two 401s on the verification GET are waited out; the rotation completes."""
    verify_401 = {"armed": True}

    def after_reissue(event: ResponseEvent) -> None:
        if event.path == "/account/key/reissue" and verify_401["armed"]:
            verify_401["armed"] = False
            api.faults.fail("get_key", status=401, code="AUTH_INVALID_API_KEY", times=2)

    async with hooked_client(api, client, on_response=[after_reissue]) as hooked:
        event = await KeyRotator(hooked, store=store).rotate_now()
    assert api.reissues == 1
    assert event.new_key == api.root_key
    assert await stored_key_works(api, store)


async def test_store_that_cannot_be_written_prevents_the_reissue(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A store failing before the reissue: RotationError, no reissue, old key still valid."""
    store = FlakyStore()
    rotator = KeyRotator(client, store=store)
    await rotator.check()  # initialises the store with the current key
    old = api.root_key
    store.failing = lambda record: record.pending is not None
    with pytest.raises(RotationError, match="nothing was reissued"):
        await rotator.rotate_now()
    assert api.reissues == 0
    assert api.is_active(old)
    assert client.api_key == old


async def test_transient_store_failure_after_reissue_is_retried(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The save of the new key fails twice, then succeeds: the store holds the new key."""
    store = FlakyStore()
    store.failing = fail_times(2, lambda record: record.generation == 2)
    event = await KeyRotator(client, store=store).rotate_now()
    assert store.failures == 2
    assert api.reissues == 1
    assert await stored_key_works(api, store)
    record = await store.load()
    assert record is not None and record.key == event.new_key


async def test_store_down_after_reissue_keeps_key_in_memory_then_saves_it(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A store that stays down after the reissue: the process keeps the new key and saves
    it at the next check once the store is back; no second reissue.
    """
    store = FlakyStore()
    rotator = KeyRotator(client, store=store)
    store.failing = lambda record: record.generation == 2
    with pytest.raises(RotationError, match="could not be saved"):
        await rotator.rotate_now()
    assert api.reissues == 1
    assert client.api_key == api.root_key, "this process uses the new key"
    assert await client.get_key()

    store.failing = lambda record: False
    event = await rotator.check()
    assert event is not None and event.generation == 2
    assert api.reissues == 1
    assert await stored_key_works(api, store)


async def test_a_key_held_in_memory_is_kept_aside_when_the_store_moves_past_it(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The new key could not be saved, and before this process could save it the store
    took another record at the next generation (written by hand, say, with a key that does
    not work): the held key is kept aside there, never dropped. The stored key is adopted,
    refused, and the kept-aside key, which works, is promoted: no second reissue.
    """
    store = FlakyStore()
    rotator = KeyRotator(client, store=store)
    store.failing = lambda record: record.generation == 2
    with pytest.raises(RotationError, match="could not be saved"):
        await rotator.rotate_now()
    held = api.root_key
    assert client.api_key == held

    store.failing = lambda record: False
    journaled = await store.load()
    assert journaled is not None
    elsewhere = SecretKey("sk_live_root_" + "7" * 24 + "XXXX")  # never issued
    await store.save(
        attrs.evolve(journaled, generation=2, key=elsewhere, key_id="key_elsewhere", pending=None),
        expected_generation=1,
    )
    await rotator.check()

    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.kept_aside) == (3, held, ())
    assert client.api_key == held
    assert api.reissues == 1


async def test_refused_reissue_closes_the_journal(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """403 (unverified email) on reissue: RotationError, journal closed, old key in force."""
    api.set_email_verified(False)
    with pytest.raises(RotationError, match="still in force"):
        await KeyRotator(client, store=store).rotate_now()
    record = await store.load()
    assert record is not None and record.pending is None
    assert api.reissues == 0 and api.is_active(record.key)


async def test_unknown_outcome_is_resolved_by_the_next_check(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Lost response and an unreachable probe: RotationError now; the next check probes
    the stored key, finds it revoked and recovers with the session JWT.
    """
    armed = {"on": True}

    def after_reissue_request(event: RequestEvent) -> None:
        if event.path == "/account/key/reissue" and armed["on"]:
            armed["on"] = False
            api.faults.drop_after_commit("reissue_key")
            api.faults.fail("get_key", status=503, times=3)

    async with hooked_client(api, client, on_request=[after_reissue_request]) as hooked:
        rotator = KeyRotator(hooked, store=store, recovery_token=api.session_token)
        with pytest.raises(RotationError, match="could not tell"):
            await rotator.rotate_now()
        assert api.reissues == 1
        await rotator.check()
    assert api.reissues == 2
    assert await stored_key_works(api, store)
    record = await store.load()
    assert record is not None and record.pending is None


async def test_cancelling_stop_mid_reissue_still_saves_the_key(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """stop() (itself cancelled) during the reissue: the reissue and save complete, no
    task is left pending, and the next rotator finishes the announcement.
    """
    api.faults.delay("reissue_key", 0.5)
    sent = asyncio.Event()

    def on_request(event: RequestEvent) -> None:
        if event.path == "/account/key/reissue":
            sent.set()

    async with hooked_client(api, client, on_request=[on_request]) as hooked:
        rotator = KeyRotator(hooked, store=store)
        rotation = asyncio.ensure_future(rotator.rotate_now())
        await asyncio.wait_for(sent.wait(), 5)
        stopping = asyncio.ensure_future(rotator.stop())
        await asyncio.sleep(0)  # stop() has begun: it cancelled the rotation and waits
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        with pytest.raises(asyncio.CancelledError):
            await rotation
        assert api.reissues == 1
        assert await stored_key_works(api, store)
        assert hooked.api_key == api.root_key

        announced: list[int] = []
        follower = KeyRotator(hooked, store=store)
        follower.on_rotate(lambda event: announced.append(event.generation))
        await follower.check()
    assert announced == [2]
    record = await store.load()
    assert record is not None and record.pending is None
    assert api.reissues == 1


async def test_saved_key_revoked_before_verify_is_recovered(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """A reissue landing right after ours (say, an earlier attempt arriving late) revokes
    the key we saved: verification sees 401s, and the recovery token mends it.
    """
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)

    async def late_reissue(step: Step) -> None:
        if step is Step.SAVED and api.reissues == 1:
            async with AccountClient(
                session_token=api.session_token, base_url=api.base_url, clock=client.clock
            ) as late:
                await late.reissue_key()

    after_step(rotator, late_reissue)
    event = await rotator.rotate_now()
    assert api.reissues == 3
    assert rotator.recoveries == 1
    assert event.new_key == api.root_key
    assert event.generation == 3
    assert await stored_key_works(api, store)


async def test_saved_key_revoked_before_verify_without_token_halts(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """The same without a recovery token: a RotationError that says how to recover."""
    rotator = KeyRotator(client, store=store)

    async def late_reissue(step: Step) -> None:
        if step is Step.SAVED and api.reissues == 1:
            async with AccountClient(
                session_token=api.session_token, base_url=api.base_url, clock=client.clock
            ) as late:
                await late.reissue_key()

    after_step(rotator, late_reissue)
    with pytest.raises(RotationError, match="recovery_token"):
        await rotator.rotate_now()
    assert api.reissues == 2


async def test_a_save_that_landed_but_reported_failure_is_not_taken_for_a_fence(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """The new key's save takes effect but reports an error; the retry finds it stored and
    carries on: client switched, nothing kept aside, one reissue.
    """
    store = FlakyStore()
    store.failing_after_save = fail_times(1, lambda record: record.generation == 2)
    event = await KeyRotator(client, store=store).rotate_now()
    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.kept_aside) == (2, event.new_key, ())
    assert client.api_key == event.new_key
    assert api.reissues == 1


async def test_a_fenced_key_is_kept_aside_through_a_transient_store_error(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A save fenced off by a newer generation keeps the reissued key aside, retrying a
    store that fails once meanwhile: the key is never dropped.
    """
    store = FlakyStore()
    rotator = KeyRotator(client, store=store)
    await rotator.check()

    async def someone_else_saves(step: Step) -> None:
        if step is Step.REISSUED:
            record = await store.load()
            assert record is not None
            await MemoryKeyStore.save(
                store, attrs.evolve(record, generation=5, pending=None), expected_generation=1
            )
            store.failing = fail_times(1, lambda record: record.generation == 5)

    after_step(rotator, someone_else_saves)
    with pytest.raises(RotationError, match="kept aside"):
        await rotator.rotate_now()
    record = await store.load()
    assert record is not None
    assert record.kept_aside == (api.root_key,)
    assert store.failures == 1
