"""`RedisKeyStore` on the topologies production runs: a Redis Cluster and Sentinel.

Real servers on loopback (`_topologies.py`): a cluster of 3 primaries and 3 replicas, and
a primary with one replica watched by three sentinels. Fleets of worker processes share
one store on them; their commands go through the plain test server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import KeyRecord, RedisKeyStore, SecretKey, StaleGenerationError, StoreError
from cs2cap_account.testing import FakeCS2CapAPI

from ._fleet import Fleet, ReissueLog
from ._records import sha256
from ._topologies import SERVICE, Cluster, SentinelSet
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

FLEET_SIZE = 8
BOUND = 20.0


def record(generation: int, letter: str = "a") -> KeyRecord:
    """A record for generation `generation`, with a key of its own."""
    import datetime as dt

    return KeyRecord(
        generation=generation,
        key=SecretKey(f"sk_live_root_{letter * 24}{generation:04d}"),
        key_id=f"key_{letter}{generation}",
        saved_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        lineage="L",
    )


async def next_change(store: RedisKeyStore, generation: int, bound: float = BOUND) -> float:
    """Seconds until `store.changes()` yields `generation` (its first, polled, value aside)."""
    changes = store.changes()
    try:
        await anext(changes)  # the poll at start
        started = time.monotonic()
        while await asyncio.wait_for(anext(changes), bound) != generation:
            pass
        return time.monotonic() - started
    finally:
        await changes.aclose()


async def subscribed(cluster: RedisCluster, channel: str) -> None:
    """Bounded wait until some node of `cluster` counts a subscriber on `channel`."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        for node in cluster.get_nodes():
            counts = dict(await cluster.pubsub_numsub(channel, target_nodes=node))
            if counts.get(channel.encode(), 0) > 0:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nobody subscribed to {channel} within {BOUND} s")


# -- Redis Cluster ---------------------------------------------------------------------------


async def test_a_store_on_a_cluster_keeps_its_keys_in_one_slot_and_works(
    redis_cluster: Cluster, store_name: str
) -> None:
    """Through a `redis+cluster://` URL: save, load, the lease and `changes()` all work,
    and the record, the lease and the channel share the hash tag, hence one slot.
    """
    from redis.asyncio.cluster import RedisCluster

    store = RedisKeyStore(redis_cluster.url, name=store_name, poll_interval=60)
    other = RedisKeyStore(redis_cluster.url, name=store_name, poll_interval=60)
    follower = RedisKeyStore(redis_cluster.url, name=store_name, poll_interval=60)
    plain = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        slots = {plain.keyslot(k) for k in (store.record_key, store.lease_key, store.channel)}
        assert len(slots) == 1
        assert await store.load() is None
        await store.save(record(1), expected_generation=None)
        assert await other.load() == record(1)
        async with store.lock():
            assert await plain.exists(store.lease_key) == 1
        assert await plain.exists(store.lease_key) == 0
        # A store whose first command is changes() (its client has no slot map yet).
        waiting = asyncio.ensure_future(next_change(follower, 2))
        await subscribed(plain, store.channel)  # (the poll alone would take 60 s)
        await store.save(record(2), expected_generation=1)
        assert await waiting < BOUND
        with pytest.raises(StaleGenerationError):
            await store.save(record(3), expected_generation=1)
    finally:
        await store.aclose()
        await other.aclose()
        await follower.aclose()
        await plain.aclose()


async def test_a_store_takes_a_cluster_client_of_yours_and_leaves_it_open(
    redis_cluster: Cluster, store_name: str
) -> None:
    """`RedisKeyStore(RedisCluster(...))`: the scripts route to the record's node."""
    from redis.asyncio.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[1].port)
    try:
        store = RedisKeyStore(client, name=store_name)
        await store.save(record(1), expected_generation=None)
        assert await store.load() == record(1)
        async with store.lock():
            pass
        await store.aclose()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_cluster_save_waits_for_a_replica_of_the_records_own_node(
    redis_cluster: Cluster, store_name: str
) -> None:
    """`min_replicas=1` on a cluster: a save returns once the replica of the record's
    primary has it. That replica frozen, the save raises `StoreError`; thawed, the same
    save is confirmed. After a failover, the promoted primary has no replica yet, and the
    same store's next save (its first command since) is refused, not confirmed by some
    other node's replica.
    """
    store = RedisKeyStore(redis_cluster.url, name=store_name, min_replicas=1, replica_timeout=0.5)
    try:
        await store.save(record(1), expected_generation=None)
        primary = redis_cluster.primary_of(store.record_key)
        replica = redis_cluster.replica_of(primary)

        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="0 of 1 replicas confirmed"):
                await store.save(record(2), expected_generation=1)
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        await store.save(record(2), expected_generation=1)  # the retry: confirmed

        redis_cluster.fail_primary_of(store.record_key)
        refusals: list[str] = []
        for _ in range(3):  # the first may meet the dead node: refused too, and re-mapped
            with pytest.raises(StoreError) as caught:
                await store.save(record(3), expected_generation=2)
            refusals.append(str(caught.value))
            if "replicas confirmed" in refusals[-1]:
                break
        assert "0 of 1 replicas confirmed" in refusals[-1], refusals
        assert await store.load() == record(3)  # on the promoted primary, unconfirmed
    finally:
        await store.aclose()


async def test_eight_processes_on_a_cluster_reissue_once(
    redis_server: RedisServer,
    redis_client: Redis,
    redis_cluster: Cluster,
    store_name: str,
    tmp_path: Path,
) -> None:
    """Eight workers whose store is on the cluster race `rotate_now()`: one reissue, and
    every worker ends on the stored key.
    """
    await fleet_races_once(redis_server, redis_client, redis_cluster.url, store_name, tmp_path)


async def test_a_cluster_primary_killed_mid_fleet_loses_nothing(
    redis_server: RedisServer,
    redis_client: Redis,
    redis_cluster: Cluster,
    store_name: str,
    tmp_path: Path,
) -> None:
    """The fleet saves with `min_replicas=1`; the primary of the store's slot is SIGKILLed
    right after a rotation; its replica is promoted and holds that generation. With no
    replica left, a rotation is refused before its reissue (no save could be durable);
    once the killed node is back as a replica, the next one goes through. Every worker
    ends on one working key, and the fleet made exactly one reissue per rotation.
    """
    env = {"FLEET_STORE_URL": redis_cluster.url, "FLEET_MIN_REPLICAS": "1"}
    api = FakeCS2CapAPI(rate_limits=False)
    async with api:
        store = RedisKeyStore(redis_cluster.url, name=store_name)
        fleet = Fleet(redis_client, redis_server.url, api, store_name, tmp_path, env)
        try:
            workers = await fleet.start(4)
            await fleet.send([0], "rotate")
            await fleet.reports("rotated", 1)
            saved = await store.load()
            assert saved is not None
            assert saved.generation == 2

            killed = redis_cluster.fail_primary_of(store.record_key)

            assert await store.load() == saved  # the promoted replica had it
            await fleet.send([1], "rotate")  # with no replica left, no save is durable
            refused = await fleet.reports("rotated", 1)
            assert "nothing was reissued" in refused[0]["rotate_error"], refused
            assert api.reissues == 1

            redis_cluster.rejoin(killed)
            await fleet.send([1], "rotate")
            rotated = await fleet.reports("rotated", 1)
            await fleet.send(workers, f"check {os.getpid()}")
            checked = await fleet.reports("checked", len(workers))
        finally:
            await fleet.close()
            await store.aclose()
        reader = RedisKeyStore(redis_cluster.url, name=store_name)
        final = await reader.load()
        await reader.aclose()
        assert final is not None
        assert rotated[0].get("rotate_error") is None, rotated
        assert final.generation == 3
        assert api.reissues == 2
        assert rotated[0]["ok"], rotated
        assert {r["sha256"] for r in checked} == {sha256(final.key)}
        assert all(r["ok"] for r in checked), checked
        assert fleet.leaks() == []


# -- Sentinel ----------------------------------------------------------------------------------


async def test_a_store_finds_the_primary_through_the_sentinels(
    redis_sentinels: SentinelSet, store_name: str
) -> None:
    """A `redis+sentinel://` URL and a `Sentinel(...).master_for(...)` client of yours both
    reach the primary the sentinels name, and see each other's saves.
    """
    from redis.asyncio.sentinel import Sentinel

    by_url = RedisKeyStore(redis_sentinels.url, name=store_name)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [("127.0.0.1", s.port) for s in redis_sentinels.sentinels]
    )
    client = sentinel.master_for(SERVICE)
    by_client = RedisKeyStore(client, name=store_name)
    try:
        await by_url.save(record(1), expected_generation=None)
        assert await by_client.load() == record(1)
        async with by_client.lock():
            pass
    finally:
        await by_url.aclose()
        await by_client.aclose()
        await client.aclose()
        for each in sentinel.sentinels:
            await each.aclose()


async def test_a_save_waits_for_its_replica_and_says_when_it_cannot(
    redis_sentinels: SentinelSet, store_name: str
) -> None:
    """With `min_replicas=1` a save returns once the replica has it. With the replica
    frozen, it raises `StoreError` within `replica_timeout`; saved again once the replica
    is back, the record the unconfirmed attempt stored is confirmed, not fenced off.
    """
    url = f"redis://127.0.0.1:{redis_sentinels.primary.port}/0"
    store = RedisKeyStore(url, name=store_name, min_replicas=1, replica_timeout=0.5)
    replica = RedisKeyStore(f"redis://127.0.0.1:{redis_sentinels.replica.port}/0", name=store_name)
    try:
        await store.save(record(1), expected_generation=None)
        assert await replica.load() == record(1)  # there as soon as the save returned

        os.kill(redis_sentinels.replica.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="0 of 1 replicas confirmed"):
                await store.save(record(2), expected_generation=1)
        finally:
            os.kill(redis_sentinels.replica.proc.pid, signal.SIGCONT)
        await store.save(record(2), expected_generation=1)  # the retry: confirmed
        assert await replica.load() == record(2)
        with pytest.raises(StaleGenerationError):
            await store.save(record(2, "b"), expected_generation=1)  # another record: fenced
    finally:
        await store.aclose()
        await replica.aclose()


async def test_eight_processes_behind_sentinels_reissue_once(
    redis_server: RedisServer,
    redis_client: Redis,
    redis_sentinels: SentinelSet,
    store_name: str,
    tmp_path: Path,
) -> None:
    """The same race, on a Sentinel-managed primary: one reissue, one key everywhere."""
    await fleet_races_once(redis_server, redis_client, redis_sentinels.url, store_name, tmp_path)


async def test_a_failover_right_after_a_save_keeps_that_generation(
    redis_server: RedisServer,
    redis_client: Redis,
    redis_sentinels: SentinelSet,
    store_name: str,
    tmp_path: Path,
) -> None:
    """Saves wait for the replica (`min_replicas=1`); the primary is SIGKILLed right after
    a rotation; the sentinels promote the replica, which holds that generation; the old
    primary comes back as its replica, and the fleet carries on through the new primary
    with 0 extra reissues.
    """
    env = {"FLEET_STORE_URL": redis_sentinels.url, "FLEET_MIN_REPLICAS": "1"}
    api = FakeCS2CapAPI(rate_limits=False)
    log_store = RedisKeyStore(redis_sentinels.url, name=store_name)
    log = ReissueLog(api, log_store)
    log.install()
    async with api:
        fleet = Fleet(redis_client, redis_server.url, api, store_name, tmp_path, env)
        try:
            workers = await fleet.start(4)
            await fleet.send([0], "rotate")
            first = await fleet.reports("rotated", 1)
            old_port = redis_sentinels.primary.port
            redis_sentinels.primary.kill()
            new_port = redis_sentinels.wait_for_failover(old_port)
            assert new_port == redis_sentinels.replica.port
            redis_sentinels.rejoin(redis_sentinels.primary, new_port)  # a replica again

            promoted = await log_store.load()
            assert promoted is not None
            assert (promoted.generation, sha256(promoted.key)) == (2, first[0]["sha256"])

            await fleet.send([2], "rotate")
            second = await fleet.reports("rotated", 1)
            await fleet.send(workers, f"check {os.getpid()}")
            checked = await fleet.reports("checked", len(workers))
        finally:
            await fleet.close()
        final = await log_store.load()
        await log_store.aclose()
        assert final is not None
        assert final.generation == 3
        assert api.reissues == 2
        assert [r.by_session for r in log.reissues] == [False, False]
        assert second[0]["ok"], second
        assert {r["sha256"] for r in checked} == {sha256(final.key)}
        assert all(r["ok"] for r in checked), checked
        assert fleet.leaks() == []


# -- shared ------------------------------------------------------------------------------------


async def fleet_races_once(
    redis_server: RedisServer, redis_client: Redis, store_url: str, name: str, tmp_path: Path
) -> None:
    """Eight workers with their store at `store_url` rotate at once: exactly one reissue,
    every worker on the stored key at the next generation, nothing leaked.
    """
    api = FakeCS2CapAPI(rate_limits=False)
    async with api:
        fleet = Fleet(
            redis_client, redis_server.url, api, name, tmp_path, {"FLEET_STORE_URL": store_url}
        )
        try:
            workers = await fleet.start(FLEET_SIZE)
            await fleet.send(workers, "rotate")
            reports = await fleet.reports("rotated", FLEET_SIZE)
        finally:
            await fleet.close()
        store = RedisKeyStore(store_url, name=name)
        stored = await store.load()
        await store.aclose()
        assert stored is not None
        assert api.reissues == 1
        assert all(r["ok"] for r in reports), reports
        assert {r["sha256"] for r in reports} == {sha256(stored.key)}
        assert (stored.generation, stored.pending) == (2, None)
        assert sorted(r["reason"] for r in reports) == ["adopted"] * 7 + ["manual"]
        assert fleet.leaks() == []


async def test_a_rotation_announces_nothing_until_a_replica_has_the_new_key(
    redis_sentinels: SentinelSet, store_name: str
) -> None:
    """With the replica frozen before a rotation, its journal cannot be saved durably and
    nothing is reissued. Frozen right after the journal, the new key's save is never
    confirmed: the rotator keeps the new key in memory (the client uses it), raises
    `RotationError`, and fires no callback, at that check and the next. Once the replica
    is back, the next check confirms the save and announces the key, once; nothing is
    reissued again.
    """
    from cs2cap_account import AccountClient, FakeClock, KeyRotator, RotationError, RotationEvent
    from cs2cap_account.rotation import Step
    from cs2cap_account.testing import after_step

    clock = FakeClock()
    url = f"redis://127.0.0.1:{redis_sentinels.primary.port}/0"
    store = RedisKeyStore(url, name=store_name, min_replicas=1, replica_timeout=0.5)
    api = FakeCS2CapAPI(rate_limits=False, clock=clock.monotonic, wall_clock=clock.now)
    announced: list[RotationEvent] = []
    async with api, AccountClient(api.root_key, base_url=api.base_url, clock=clock) as client:
        rotator = KeyRotator(client, store=store)
        rotator.on_rotate(announced.append)
        await rotator.check()
        replica = redis_sentinels.replica.proc.pid
        os.kill(replica, signal.SIGSTOP)
        try:
            with pytest.raises(RotationError, match="nothing was reissued"):
                await rotator.rotate_now()
        finally:
            os.kill(replica, signal.SIGCONT)
        assert api.reissues == 0

        async def freeze_after_the_journal(step: Step) -> None:
            if step is Step.JOURNALED:
                os.kill(replica, signal.SIGSTOP)

        after_step(rotator, freeze_after_the_journal)
        try:
            with pytest.raises(RotationError, match="could not be saved"):
                await rotator.rotate_now()
            assert client.api_key == api.root_key  # held here, in use
            with pytest.raises(RotationError, match="could not be saved"):
                await rotator.check()  # still unconfirmed: still not announced
            assert announced == []
            assert api.reissues == 1
        finally:
            os.kill(replica, signal.SIGCONT)

        event = await rotator.check()

        assert event is not None
        assert [e.key_id for e in announced] == [event.key_id]
        assert event.new_key == api.root_key
        assert api.reissues == 1
        assert await rotator.check() is None
        assert len(announced) == 1
    follower = RedisKeyStore(f"redis://127.0.0.1:{redis_sentinels.replica.port}/0", name=store_name)
    on_replica = await follower.load()
    await follower.aclose()
    await store.aclose()
    assert on_replica is not None
    assert (on_replica.key, on_replica.pending) == (event.new_key, None)
