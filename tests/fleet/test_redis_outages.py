"""A Redis that is down, at start or between a reissue and its save, and comes back.

The server keeps its data across the restart (AOF, `appendfsync always`), as a
production Redis with persistence does; it is SIGKILLed, so nothing is flushed politely.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    RedisKeyStore,
    RotationError,
    RotationEvent,
    StoreError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

from ._fleet import Fleet
from ._records import eventually, sha256
from ._topologies import Server, _free_port, _start
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[Server]:
    """A redis-server of this test's own that writes every command to its AOF first."""
    executable = shutil.which("redis-server")
    assert executable is not None, "redis-server is not installed"
    server = _start(
        executable, tmp_path / "redis", _free_port(),
        "--appendonly", "yes", "--appendfsync", "always",
    )  # fmt: skip
    try:
        yield server
    finally:
        server.kill()


async def test_a_rotator_started_while_redis_is_down_catches_up_when_it_returns(
    durable_redis: Server, store_name: str
) -> None:
    """Another process rotated (generation 2), then Redis went down. A process starting
    with the old key meanwhile runs on it (its checks raise `StoreError`, nothing is
    reissued); once Redis is back, its next check adopts the stored key.
    """
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    url = f"redis://127.0.0.1:{durable_redis.port}/0"
    async with FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now) as api:
        old_key = api.root_key
        async with AccountClient(old_key, base_url=api.base_url, clock=clock) as first:
            store = RedisKeyStore(url, name=store_name)
            rotated = await KeyRotator(first, store=store).rotate_now()
            await store.aclose()
        durable_redis.kill()

        late = RedisKeyStore(url, name=store_name, timeout=0.5)
        async with AccountClient(old_key, base_url=api.base_url, clock=clock) as client:
            rotator = KeyRotator(client, store=late)
            adopted: list[RotationEvent] = []
            rotator.on_rotate(adopted.append)
            with pytest.raises(StoreError):
                await rotator.check()
            assert rotator.current_key == old_key

            durable_redis.restart()
            event = await rotator.check()
            await late.aclose()

            assert event is not None
            assert (event.key_id, event.reason) == (rotated.key_id, "adopted")
            assert rotator.current_key == rotated.new_key == api.root_key
            assert [e.key_id for e in adopted] == [rotated.key_id]
            assert api.reissues == 1


async def test_a_redis_down_between_the_reissue_and_the_save_gets_the_key_when_back(
    durable_redis: Server, store_name: str
) -> None:
    """Redis dies right after the journal is written. The reissue happens, the save fails:
    the new key is held in memory (and in use), nothing is announced. Once Redis is back,
    the next check saves it and announces it, once; one reissue in all.
    """
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    url = f"redis://127.0.0.1:{durable_redis.port}/0"
    store = RedisKeyStore(url, name=store_name, timeout=0.5)
    async with (
        FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now) as api,
        AccountClient(api.root_key, base_url=api.base_url, clock=clock) as client,
    ):
        rotator = KeyRotator(client, store=store)
        announced: list[RotationEvent] = []
        rotator.on_rotate(announced.append)
        await rotator.check()

        async def redis_dies(step: Step) -> None:
            if step is Step.JOURNALED:
                durable_redis.kill()

        remove = after_step(rotator, redis_dies)
        with pytest.raises(RotationError, match="could not be saved"):
            await rotator.rotate_now()
        remove()
        assert announced == []
        assert client.api_key == api.root_key  # the new key, held here

        durable_redis.restart()
        event = await rotator.check()
        stored = await store.load()
        await store.aclose()

    assert event is not None
    assert stored is not None
    assert (stored.key, stored.generation, stored.pending) == (event.new_key, 2, None)
    assert [e.key_id for e in announced] == [event.key_id]
    assert api.reissues == 1


async def test_a_lease_whose_release_failed_is_released_before_the_next_lock(
    durable_redis: Server, store_name: str
) -> None:
    """Redis dies while the lease is held, so its release fails; a `lock()` tried while it
    is still down fails too. It comes back with the lease (persistence): the same
    store's next `lock()` releases its own old lease first rather than waiting out its
    two minutes.
    """
    url = f"redis://127.0.0.1:{durable_redis.port}/0"
    store = RedisKeyStore(url, name=store_name, lease_ttl=120.0, timeout=0.5)
    try:
        async with store.lock():
            durable_redis.kill()
        with pytest.raises(StoreError):
            async with store.lock():
                pass
        durable_redis.restart()
        from redis.asyncio import Redis

        plain = Redis.from_url(url)
        left = await plain.pttl(store.lease_key)
        await plain.aclose()
        assert left > 60_000  # the lease came back with Redis

        async def take() -> None:
            async with store.lock():
                pass

        await asyncio.wait_for(take(), 10.0)  # not its 120 s
    finally:
        await store.aclose()


async def test_a_fleet_writes_its_key_back_into_a_redis_restarted_empty(
    redis_server: RedisServer, redis_client: Redis, store_name: str, tmp_path: Path
) -> None:
    """Four processes hold generation 2 when their Redis restarts without persistence
    (the record vanishes). Their next looks write the key back, once, compare-and-set on
    the empty store (generation 1 of a new lineage); nobody reissues, nobody adopts an
    older key, no callback fires again, and every process goes on with the same key.
    """
    executable = shutil.which("redis-server")
    assert executable is not None, "redis-server is not installed"
    server = _start(executable, tmp_path / "store", _free_port())
    url = f"redis://127.0.0.1:{server.port}/0"
    env = {"FLEET_STORE_URL": url, "FLEET_POLL_INTERVAL": "0.2"}
    api = FakeCS2CapAPI(rate_limits=False)
    try:
        async with api:
            fleet = Fleet(redis_client, redis_server.url, api, store_name, tmp_path, env)
            try:
                workers = await fleet.start(4)
                await fleet.send([0], "rotate")
                await fleet.reports("rotated", 1)
                await fleet.reports("event", 4)  # each process announced the new key once
                store = RedisKeyStore(url, name=store_name, timeout=0.5)
                before = await store.load()
                assert before is not None

                server.kill()
                server.restart()  # no persistence: empty

                async def written_back() -> bool:
                    try:
                        return await store.load() is not None
                    except StoreError:
                        return False

                await eventually(written_back, bound=20.0)
                await fleet.send(workers, f"check {os.getpid()}")
                checked = await fleet.reports("checked", len(workers))
                after = await store.load()
                await store.aclose()
                extra_events = await fleet.received("event")
            finally:
                await fleet.close()
    finally:
        server.kill()
    assert after is not None
    assert (after.key, after.key_id) == (before.key, before.key_id)
    assert (after.generation, after.pending) == (1, None)
    assert after.lineage != before.lineage
    assert {r["sha256"] for r in checked} == {sha256(before.key)}
    assert all(r["ok"] for r in checked), checked
    assert api.reissues == 1
    assert extra_events == []
    assert fleet.leaks() == []
