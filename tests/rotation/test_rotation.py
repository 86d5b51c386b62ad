"""The rotation protocol against the fake API: single flight, schedule, children, callbacks."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    MemoryKeyStore,
    RotationEvent,
)
from cs2cap_account.testing import FakeCS2CapAPI


async def test_concurrent_rotate_now_reissues_once(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Twenty concurrent rotate_now() calls share one rotation: one reissue, one event."""
    rotator = KeyRotator(client, store=store)
    old = api.root_key

    events = await asyncio.gather(*(rotator.rotate_now() for _ in range(20)))

    assert api.reissues == 1
    assert len({id(event) for event in events}) == 1
    event = events[0]
    assert event.new_key == api.root_key != old
    assert client.api_key == event.new_key == rotator.current_key
    assert not api.is_active(old)
    record = await store.load()
    assert record is not None
    assert (record.key, record.generation, record.pending) == (event.new_key, 2, None)
    assert event.previous_key_id != event.key_id == api.root_key_id


async def test_rotate_now_twice_in_sequence_rotates_twice(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """Single flight is per rotation: a later call rotates again, to generation 3."""
    rotator = KeyRotator(client)
    first = await rotator.rotate_now()
    second = await rotator.rotate_now()
    assert api.reissues == 2
    assert (first.generation, second.generation) == (2, 3)
    assert second.previous_key_id == first.key_id
    assert api.is_active(second.new_key) and not api.is_active(first.new_key)


async def test_aged_key_is_rotated_right_after_start(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A root key created 40 days ago with max_age 30 days is rotated by the first check."""
    api.age_root_key(dt.timedelta(days=40))
    rotator = KeyRotator(client, max_age=dt.timedelta(days=30), check_interval=3600)
    rotated: asyncio.Future[RotationEvent] = asyncio.get_running_loop().create_future()

    @rotator.on_rotate
    def first_rotation(event: RotationEvent) -> None:
        if not rotated.done():
            rotated.set_result(event)

    async with rotator:
        event = await asyncio.wait_for(rotated, 10)

    assert event.reason == "max_age"
    assert api.reissues == 1
    assert api.is_active(client.api_key or "")


async def test_fresh_key_is_not_rotated(api: FakeCS2CapAPI, client: AccountClient) -> None:
    """A check on a key younger than max_age and far from expiry does not reissue."""
    api.age_root_key(dt.timedelta(days=29))
    api.set_root_expires_at(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=60))
    rotator = KeyRotator(client, max_age=dt.timedelta(days=30), before_expiry=dt.timedelta(days=7))
    assert await rotator.check() is None
    assert api.reissues == 0


async def test_key_near_expiry_is_rotated(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """A key expiring within before_expiry is rotated, whatever its age."""
    api.set_root_expires_at(clock.now() + dt.timedelta(days=3))
    rotator = KeyRotator(client, max_age=dt.timedelta(days=365), before_expiry=dt.timedelta(days=7))
    event = await rotator.check()
    assert event is not None
    assert event.reason == "before_expiry"
    assert api.reissues == 1


async def test_schedule_follows_server_clock_across_restarts(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Restarting the rotator does not postpone a due rotation: age comes from created_at."""
    store = MemoryKeyStore()
    first = KeyRotator(client, store=store, max_age=dt.timedelta(days=30))
    assert await first.check() is None
    clock.advance(dt.timedelta(days=31).total_seconds())
    second = KeyRotator(client, store=store, max_age=dt.timedelta(days=30))
    event = await second.check()
    assert event is not None
    assert event.reason == "max_age"


async def test_children_are_recreated_with_names_and_overrides(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """recreate_sub_keys: every child comes back with its name and overrides, saved."""
    bot = api.add_child_key("bot", rate_requests_per_minute_override=60)
    feed = api.add_child_key("feed", quota_requests_per_month_override=5000)
    rotator = KeyRotator(client, store=store, recreate_sub_keys=True)

    event = await rotator.rotate_now()

    assert set(event.sub_keys) == {"bot", "feed"}
    assert not api.is_active(bot.key) and not api.is_active(feed.key)
    new_bot, new_feed = event.sub_keys["bot"], event.sub_keys["feed"]
    assert api.is_active(new_bot.key) and api.is_active(new_feed.key)
    assert new_bot.key_info.rate_requests_per_minute_override == 60
    assert new_bot.key_info.quota_requests_per_month_override is None
    assert new_feed.key_info.quota_requests_per_month_override == 5000
    assert new_bot.key_info.root_key_id == event.key_id
    record = await store.load()
    assert record is not None
    assert {name: child.key for name, child in record.sub_keys.items()} == {
        "bot": new_bot.key,
        "feed": new_feed.key,
    }
    listed = {detail.key.name async for detail in client.sub_keys.iterate()}
    assert listed == {"bot", "feed"}


async def test_callbacks_sync_and_async_each_get_the_event(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """Sync and async callbacks both receive the event; events() subscribers too."""
    rotator = KeyRotator(client)
    seen: list[str] = []

    @rotator.on_rotate
    def sync_callback(event: RotationEvent) -> None:
        seen.append(f"sync:{event.generation}")

    @rotator.on_rotate
    async def async_callback(event: RotationEvent) -> None:
        await asyncio.sleep(0)
        seen.append(f"async:{event.generation}")

    stream = rotator.events()
    next_event = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    event = await rotator.rotate_now()

    assert sorted(seen) == ["async:2", "sync:2"]
    assert await asyncio.wait_for(next_event, 5) is event
    assert event.callback_errors == ()
    await stream.aclose()


async def test_failing_and_hanging_callbacks_do_not_block_others(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """A raising and a hanging callback are retried, reported, and never undo the rotation."""
    rotator = KeyRotator(client, callback_timeout=0.05)
    calls = {"raising": 0, "hanging": 0, "good": 0}

    @rotator.on_rotate
    def raising(event: RotationEvent) -> None:
        calls["raising"] += 1
        raise RuntimeError("downstream is down")

    @rotator.on_rotate
    async def hanging(event: RotationEvent) -> None:
        calls["hanging"] += 1
        await asyncio.Event().wait()

    @rotator.on_rotate
    def good(event: RotationEvent) -> None:
        calls["good"] += 1

    event = await rotator.rotate_now()

    assert calls == {"raising": 3, "hanging": 3, "good": 1}
    failed = {failure.callback.rsplit(".", 1)[-1]: failure for failure in event.callback_errors}
    assert set(failed) == {"raising", "hanging"}
    assert isinstance(failed["raising"].error, RuntimeError)
    assert isinstance(failed["hanging"].error, TimeoutError)
    assert api.is_active(event.new_key)
    assert clock.sleeps, "retries back off on the injected clock"


async def test_callback_that_recovers_on_retry_is_not_reported(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A callback failing once then succeeding leaves callback_errors empty."""
    rotator = KeyRotator(client)
    attempts: list[int] = []

    @rotator.on_rotate
    async def flaky(event: RotationEvent) -> None:
        attempts.append(event.generation)
        if len(attempts) == 1:
            raise ConnectionError("blip")

    event = await rotator.rotate_now()
    assert attempts == [2, 2]
    assert event.callback_errors == ()


async def test_rotation_logs_carry_no_plaintext_key(
    api: FakeCS2CapAPI, client: AccountClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A full rotation with children and a failing callback logs no plaintext key."""
    api.add_child_key("bot")
    caplog.set_level(logging.DEBUG, logger="cs2cap_account")
    rotator = KeyRotator(client, recreate_sub_keys=True)
    rotator.on_rotate(lambda event: 1 / 0)
    old = api.root_key
    event = await rotator.rotate_now()
    text = "\n".join(
        [record.getMessage() for record in caplog.records]
        + [repr(event), str(event), repr(rotator)]
    )
    for secret in (old, event.new_key, event.sub_keys["bot"].key, api.session_token):
        assert secret.reveal() not in text
    assert "root key rotated" in text


async def test_calls_in_flight_during_rotations_never_see_the_revoked_key(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """Calls racing ten rotations on the same client all succeed: a call refused because
    the reissue landed while it was in flight waits for the switch and is sent again.
    """
    rotator = KeyRotator(client)
    done = asyncio.Event()
    calls = 0

    async def caller() -> None:
        nonlocal calls
        while not done.is_set():
            await client.get_key()
            calls += 1

    callers = [asyncio.ensure_future(caller()) for _ in range(4)]
    for _ in range(10):
        await rotator.rotate_now()
        await asyncio.sleep(0)
    done.set()
    await asyncio.gather(*callers)  # raises if any call failed
    assert api.reissues == 10
    assert calls > 10


async def test_a_callback_returning_a_future_is_awaited(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A callback may return any awaitable (here a Future it resolves later), not only a
    coroutine: the announcement waits for it like for an async callback.
    """
    rotator = KeyRotator(client)
    resolved: list[int] = []

    def later(event: RotationEvent) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finish() -> None:
            resolved.append(event.generation)
            future.set_result(None)

        asyncio.get_running_loop().call_soon(finish)
        return future

    rotator.on_rotate(later)
    event = await rotator.rotate_now()
    assert resolved == [2]
    assert event.callback_errors == ()


async def test_rotate_now_during_an_adoption_being_announced_does_not_reissue_again(
    api: FakeCS2CapAPI, clock: FakeClock, store: MemoryKeyStore
) -> None:
    """Process B is asked to rotate while it holds the old key; before it gets the lock it
    adopts A's new key, and its callbacks for that key still run when it does: the key
    already moved, which is the rotation asked for. No second reissue, although B has no
    finished event to return yet.
    """
    async with (
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as client_a,
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as client_b,
    ):
        a = KeyRotator(client_a, store=store)
        b = KeyRotator(client_b, store=store)
        await b.check()  # B knows the store at generation 1
        old = b.current_key
        in_callback, release_callback = asyncio.Event(), asyncio.Event()
        locked, release_lock = asyncio.Event(), asyncio.Event()

        @b.on_rotate
        async def slow(_event: RotationEvent) -> None:
            in_callback.set()
            await release_callback.wait()

        async def hold_the_lock() -> None:
            async with store.lock():
                locked.set()
                await release_lock.wait()

        await a.rotate_now()
        holder = asyncio.ensure_future(hold_the_lock())
        await locked.wait()
        rotation = asyncio.ensure_future(b.rotate_now())  # away from `old`, waits for the lock
        adopting = asyncio.ensure_future(b.check())  # adopts without the lock
        await in_callback.wait()
        assert b.current_key != old
        release_lock.set()
        await holder
        for _ in range(20):  # let the rotation take the lock and look
            await asyncio.sleep(0)
        release_callback.set()
        event = await rotation
        await adopting

    assert api.reissues == 1
    assert event.new_key == a.current_key == b.current_key == api.root_key
