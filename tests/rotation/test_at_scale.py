"""Rotation at scale, in virtual time: the rotator's requests do not queue behind ordinary
calls, followers' checks cost the server one request per interval for the whole fleet,
and entering a rotator returns once the key in force is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging

import attrs
import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    Hooks,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RequestEvent,
    RotationEvent,
    StoreError,
)
from cs2cap_account._ratelimit import ROTATION_RESERVE
from cs2cap_account.stores._record import PendingRotation
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import ManualClock

RATE = 20  # the client's fixed rate: ordinary calls may send 15 a window, the rotator 20


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_rotation_under_a_saturated_limiter_does_not_wait_for_the_old_keys_window() -> None:
    """Ordinary traffic has filled its share of the key's window and three more calls
    queue for it; `rotate_now()` still completes without any time passing.

    Its requests with the old key spend the reserve, and those with the new key go in
    the new key's window, which starts empty. The queued ordinary calls then move to the
    new key's window and go at once too; the old key's window stays as full as it was.
    """
    clock = ManualClock()
    sent: list[tuple[str, float]] = []
    hooks = Hooks(on_request=[lambda event: sent.append((event.path, clock.monotonic()))])
    async with (
        FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as api,
        AccountClient(
            api.root_key, base_url=api.base_url, clock=clock, requests_per_minute=RATE, hooks=hooks
        ) as client,
    ):
        rotator = KeyRotator(client, store=MemoryKeyStore())
        await rotator.check()  # the store holds the key
        old = rotator.current_key
        limiter = client._session.shared.limiter
        assert limiter is not None
        ordinary_share = RATE - ROTATION_RESERVE
        limiter.note_sent(ordinary_share - limiter.in_window(old), credential=old)
        queued = [asyncio.ensure_future(client.get_key()) for _ in range(3)]
        await _settle()
        assert not any(call.done() for call in queued)  # they wait a window
        started, before = clock.monotonic(), len(sent)

        event = await asyncio.wait_for(rotator.rotate_now(), 5.0)

        assert clock.monotonic() == started  # nothing waited for a window
        rotation_paths = [path for path, _ in sent[before:]]
        assert "/account/key/reissue" in rotation_paths
        assert limiter.in_window(old) == ordinary_share + 2  # the reissue and its probe
        await asyncio.wait_for(asyncio.gather(*queued), 5.0)
        assert clock.monotonic() == started
        assert all(api.is_active(event.new_key) for _ in queued)
        # The new key's window: the verification and the three calls that moved to it.
        assert limiter.in_window(event.new_key) == 1 + len(queued)
        assert limiter.in_window(old) == ordinary_share + 2


async def test_the_new_keys_window_starts_empty() -> None:
    """Right after a rotation the new key's window holds only the rotation's own request
    with it, however full the old key's window is; a full window of ordinary calls then
    goes out with the new key without waiting.
    """
    clock = FakeClock()
    async with (
        FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as api,
        AccountClient(
            api.root_key, base_url=api.base_url, clock=clock, requests_per_minute=RATE
        ) as client,
    ):
        rotator = KeyRotator(client, store=MemoryKeyStore())
        limiter = client._session.shared.limiter
        assert limiter is not None
        old = client.api_key
        limiter.note_sent(RATE - ROTATION_RESERVE, credential=old)

        event = await rotator.rotate_now()

        assert limiter.in_window(event.new_key) == 1  # the verifying GET
        for _ in range(RATE - ROTATION_RESERVE - 1):
            await client.get_key()
        assert clock.sleeps == []
        assert limiter.in_window(event.new_key) == RATE - ROTATION_RESERVE


async def test_only_one_scheduled_server_check_per_fleet_per_interval() -> None:
    """Five rotators on one store check every 60 s for ten minutes: the server is asked
    about the key about once a minute in all, never twice within a minute, instead of
    five times a minute; the others compute the schedule from the stored record.
    """
    clock = ManualClock()
    checks: list[float] = []

    def on_request(event: RequestEvent) -> None:
        if event.path == "/account/key":
            checks.append(clock.monotonic())

    store = MemoryKeyStore()
    interval = 60.0
    async with (
        FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as api,
        contextlib.AsyncExitStack() as stack,
    ):
        rotators = []
        for _ in range(5):
            client = await stack.enter_async_context(
                AccountClient(
                    api.root_key,
                    base_url=api.base_url,
                    clock=clock,
                    hooks=Hooks(on_request=[on_request]),
                )
            )
            rotator = KeyRotator(
                client, store=store, max_age=dt.timedelta(days=30), check_interval=interval
            )
            rotators.append(await stack.enter_async_context(rotator))
        await _settle()
        for _ in range(10 * 6):
            await clock.advance(interval / 6)

        assert 9 <= len(checks) <= 12
        gaps = [later - earlier for earlier, later in itertools.pairwise(checks[1:])]
        assert all(gap >= interval for gap in gaps), gaps
        stored = await store.load()
        assert stored is not None and stored.checked_at is not None
        assert stored.key_info is not None and stored.key_info.id == stored.key_id


async def test_a_key_that_looks_due_by_the_store_is_confirmed_with_the_server(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """The stored metadata say the key is young; the server says it is 40 days old.

    The schedule's check goes by the store until the fleet's check interval has passed,
    then asks the server, which finds the key due, and rotates.
    """
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store, max_age=dt.timedelta(days=30), check_interval=60)
    rotated: asyncio.Future[RotationEvent] = asyncio.get_running_loop().create_future()

    def first(event: RotationEvent) -> None:
        if not rotated.done():
            rotated.set_result(event)

    rotator.on_rotate(first)
    await rotator.check()  # the store holds the key, with its metadata
    api.age_root_key(dt.timedelta(days=40))
    async with rotator:
        event = await asyncio.wait_for(rotated, 5.0)
    assert event.reason == "max_age"


async def test_current_key_is_the_stored_key_right_after_entering(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Another process rotated already; a rotator built with the revoked key holds the
    stored key from the first line inside `async with`.
    """
    store = MemoryKeyStore()
    original = client.api_key
    assert original is not None
    other = KeyRotator(client, store=store)
    rotated = await other.rotate_now()
    assert not api.is_active(original)

    async with AccountClient(original, base_url=api.base_url, clock=clock) as stale:
        rotator = KeyRotator(stale, store=store)
        async with rotator:
            assert rotator.current_key == rotated.new_key
            assert stale.api_key == rotated.new_key
            assert rotator.generation == rotated.generation


class _DownStore(MemoryKeyStore):
    """A memory store that cannot be read while `down` is set."""

    def __init__(self, record: KeyRecord | None = None) -> None:
        super().__init__(record)
        self.down = True
        self.refused = 0

    async def load(self) -> KeyRecord | None:
        if self.down:
            self.refused += 1
            raise StoreError("connection refused (simulated)")
        return await super().load()


async def test_entering_with_an_unreachable_store_goes_on_after_a_bounded_wait(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot be read at start: entering returns after `READY_WAIT` (virtual
    time), says why in the log, and the client keeps its key; the store is tried again in
    the background, and once it answers the rotator holds the stored key.
    """
    original = client.api_key  # the key this process was configured with, soon revoked
    assert original is not None
    first = MemoryKeyStore()
    other = KeyRotator(client, store=first)
    rotated = await other.rotate_now()
    stored = await first.load()
    store = _DownStore(stored)
    async with AccountClient(original, base_url=api.base_url, clock=clock) as stale:
        rotator = KeyRotator(stale, store=store)
        async with rotator:
            assert stale.api_key != rotated.new_key
            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "could not be learnt" in r.getMessage()
            ]
            assert warnings and "connection refused" in warnings[0]
            assert store.refused >= 1
            store.down = False
            for _ in range(200):
                if await rotator.wait_ready(timeout=1.0):
                    break
            assert rotator.current_key == rotated.new_key


async def test_a_follower_sends_a_saved_key_at_once_and_announces_it_when_the_journal_closes(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """A leader is paused right after saving its new key (journal still open). A follower
    told of the change switches to the new key at once, without the lease and without a
    request, and announces nothing yet; told again once the journal closed, it announces
    the key. A journal abandoned for longer than `STALE_JOURNAL` is finished instead.
    """
    from cs2cap_account.rotation._catch_up import STALE_JOURNAL
    from cs2cap_account.testing import after_step

    store = MemoryKeyStore()
    leader = KeyRotator(client, store=store)
    await leader.check()
    original = client.api_key
    assert original is not None
    saved, resume = asyncio.Event(), asyncio.Event()

    async def pause(step: str) -> None:
        if step == "saved":
            saved.set()
            await resume.wait()

    after_step(leader, pause)
    async with AccountClient(original, base_url=api.base_url, clock=clock) as other:
        follower = KeyRotator(other, store=store)
        seen: list[RotationEvent] = []
        follower.on_rotate(seen.append)
        await follower._catch_up.follow_up()  # it holds the stored key
        rotation = asyncio.ensure_future(leader.rotate_now())
        await asyncio.wait_for(saved.wait(), 5.0)
        before = sum(api.requests.values())

        assert await asyncio.wait_for(follower._catch_up.follow_up(), 5.0) is True
        assert follower.current_key == leader.current_key != original
        assert seen == []
        assert sum(api.requests.values()) == before

        resume.set()
        event = await rotation
        assert await follower._catch_up.follow_up() is False
        assert [e.key_id for e in seen] == [event.key_id]

        # A journal left open far longer than a rotation takes is finished by a follower.
        stored = await store.load()
        assert stored is not None and stored.pending is None
        stale = dt.datetime.now(dt.timezone.utc) - 2 * STALE_JOURNAL
        journal = PendingRotation(
            from_generation=stored.generation - 1,
            previous_key_id=stored.key_id,
            reason="manual",
            started_at=stale,
        )
        abandoned = attrs.evolve(stored, pending=journal)
        await store.save(abandoned, expected_generation=stored.generation)
        assert await follower._catch_up.follow_up() is False
        finished = await store.load()
        assert finished is not None and finished.pending is None


async def test_wait_ready_after_start_and_its_bound_checked(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """`start()` still returns its task; `wait_ready()` then returns True once the key in
    force is known. A bound that is not a positive number of seconds is refused.
    """
    store = MemoryKeyStore()
    rotator = KeyRotator(client, store=store)
    task = rotator.start()
    try:
        assert isinstance(task, asyncio.Task)
        assert await rotator.wait_ready() is True
        stored = await store.load()
        assert stored is not None and rotator.current_key == stored.key
        with pytest.raises(TypeError):
            await rotator.wait_ready(timeout="10")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            await rotator.wait_ready(timeout=0)
    finally:
        await rotator.stop()
