"""A rotating leader that stalls past its lease (a frozen task: no renewal, paused before
its save) is fenced off by the generation, and no key is ever lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRecord,
    KeyRotator,
    RedisKeyStore,
    RotationError,
    StaleGenerationError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

if TYPE_CHECKING:
    from redis.asyncio.lock import Lock

from ._records import leaked
from .conftest import RedisServer

BOUND = 10.0


class FrozenLeaseStore(RedisKeyStore):
    """A store whose lease is never renewed, as if its process stalled while holding it."""

    async def _keep_lease(self, lease: Lock) -> None:
        await asyncio.Event().wait()


class PausingStore(RedisKeyStore):
    """A store that holds a save matching `when` until `resume` is set."""

    def __init__(self, url: str, *, name: str, when: Callable[[KeyRecord], bool]) -> None:
        super().__init__(url, name=name, lease_ttl=5.0)
        self.when = when
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Wait for `resume` first if `when(record)`, then save."""
        if self.when(record) and not self.resume.is_set():
            self.paused.set()
            await self.resume.wait()
        await super().save(record, expected_generation=expected_generation)


class Paused:
    """A rotator step hook that stops the rotation right after `step` until resumed."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.reached = asyncio.Event()
        self.resume = asyncio.Event()

    async def __call__(self, step: Step) -> None:
        """Hold the rotation here if this is the step."""
        if step is self.step:
            self.reached.set()
            await self.resume.wait()


@pytest.fixture
async def api() -> AsyncIterator[FakeCS2CapAPI]:
    """The fake API, without rate limits."""
    async with FakeCS2CapAPI(rate_limits=False) as fake:
        yield fake


Closable = KeyRotator | AccountClient | RedisKeyStore


@pytest.fixture
async def opened() -> AsyncIterator[list[Closable]]:
    """Rotators, clients and stores a test opens: stopped and closed after it, in order."""
    things: list[Closable] = []
    yield things
    for thing in things:
        if isinstance(thing, KeyRotator):
            await thing.stop()
    for thing in things:
        if not isinstance(thing, KeyRotator):
            await thing.aclose()


async def stalled_leader(
    api: FakeCS2CapAPI,
    server: RedisServer,
    name: str,
    opened: list[Closable],
    *,
    recovery: bool,
) -> tuple[KeyRotator, AccountClient, Paused, asyncio.Future[object]]:
    """A leader on a 0.2 s lease it never renews, its rotation frozen right after the
    reissue: the new key exists only in its memory, the stored one is revoked.
    """
    store = FrozenLeaseStore(server.url, name=name, lease_ttl=0.2)
    client = AccountClient(api.root_key, base_url=api.base_url, clock=FakeClock())
    opened += [store, client]
    leader = KeyRotator(client, store=store, recovery_token=api.session_token if recovery else None)
    opened.append(leader)
    await leader.check()  # the store starts at generation 1 with the current key
    pause = Paused(Step.REISSUED)
    after_step(leader, pause)
    rotation: asyncio.Future[object] = asyncio.ensure_future(leader.rotate_now())
    await asyncio.wait_for(pause.reached.wait(), BOUND)
    assert api.reissues == 1
    return leader, client, pause, rotation


async def test_a_leader_stalled_past_its_lease_is_fenced_off_and_its_key_kept_aside(
    api: FakeCS2CapAPI,
    redis_server: RedisServer,
    store_name: str,
    opened: list[Closable],
) -> None:
    """Another rotator takes the expired lease, finds the journal open and the stored key
    revoked, and recovers with the session JWT. When the stalled leader wakes, its save
    is refused (`StaleGenerationError`), its key is kept aside in the store rather than
    dropped, and its error says so without showing a key. The fleet ends on the
    recovered key, which works, and the stalled leader adopts it on its next call.
    """
    leader, leader_client, pause, rotation = await stalled_leader(
        api, redis_server, store_name, opened, recovery=False
    )
    store = RedisKeyStore(redis_server.url, name=store_name)
    client = AccountClient(api.root_key, base_url=api.base_url, clock=FakeClock())
    opened += [store, client]
    other = KeyRotator(client, store=store, recovery_token=api.session_token)
    opened.append(other)

    await asyncio.wait_for(other.check(), BOUND)  # waits for the lease to run out
    pause.resume.set()
    with pytest.raises(RotationError) as fenced:
        await asyncio.wait_for(rotation, BOUND)

    assert isinstance(fenced.value.__cause__, StaleGenerationError)
    assert "kept aside" in str(fenced.value)
    record = await store.load()
    assert record is not None
    assert (record.generation, record.pending) == (2, None)
    assert record.key == api.root_key
    assert api.is_active(record.key)
    assert len(record.kept_aside) == 1
    assert not api.is_active(record.kept_aside[0])  # revoked by the recovery
    assert (api.reissues, other.recoveries) == (2, 1)
    assert leaked(str(fenced.value), record.key, *record.kept_aside) == []
    await leader_client.get_key()  # a 401, then the stored key, which works
    assert leader.current_key == record.key


@pytest.mark.parametrize("how", ["resume", "401"])
async def test_a_fenced_key_that_is_the_live_one_is_promoted(
    api: FakeCS2CapAPI,
    redis_server: RedisServer,
    store_name: str,
    opened: list[Closable],
    how: str,
) -> None:
    """The stalled leader wakes after the other rotator recovered a key but before that
    key was saved: the leader's (now revoked) key is saved, and the recovered key - the
    only live one - is fenced off and kept aside. It is not lost: the next rotator to
    look (`resume`: a check finds the journal open), or the next call that gets a 401
    (`401`), promotes it to the next generation, without another reissue.
    """
    _leader, leader_client, pause, rotation = await stalled_leader(
        api, redis_server, store_name, opened, recovery=False
    )
    store = PausingStore(redis_server.url, name=store_name, when=lambda r: r.generation == 2)
    client = AccountClient(api.root_key, base_url=api.base_url, clock=FakeClock())
    opened += [store, client]
    other = KeyRotator(client, store=store, recovery_token=api.session_token)
    opened.append(other)

    recovering = asyncio.ensure_future(other.check())
    await asyncio.wait_for(store.paused.wait(), BOUND)  # recovered, about to save
    live = api.root_key
    pause.resume.set()
    with pytest.raises(RotationError):  # saved a key revoked meanwhile; no token to recover
        await asyncio.wait_for(rotation, BOUND)
    store.resume.set()
    with pytest.raises(RotationError) as fenced:
        await asyncio.wait_for(recovering, BOUND)
    assert isinstance(fenced.value.__cause__, StaleGenerationError)
    stuck = await store.load()
    assert stuck is not None
    assert not api.is_active(stuck.key)
    assert stuck.kept_aside == (live,)

    if how == "resume":
        follower = AccountClient(stuck.key, base_url=api.base_url, clock=FakeClock())
        third = KeyRotator(follower, store=store)
        opened += [follower, third]
        await third.check()
    else:
        follower = leader_client
        await follower.get_key()  # 401 with the stored key: the kept-aside one is promoted

    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.kept_aside) == (3, live, ())
    assert api.is_active(record.key)
    assert follower.api_key == live
    assert api.reissues == 2
