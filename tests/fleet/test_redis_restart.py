"""A Redis restarted without persistence in the middle of a rotation: the key is kept."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRecord,
    KeyRotator,
    RedisKeyStore,
    RotationEvent,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis


async def test_a_redis_emptied_between_the_reissue_and_the_save_keeps_the_new_key(
    redis_server: RedisServer, redis_client: Redis, store_name: str
) -> None:
    """Redis loses its data (a restart without persistence: `FLUSHALL`) after the reissue,
    before the save. The new key is written back into the empty store as generation 1 of a
    new lineage, and the rotation finishes: verified, announced once, in use; a second
    process on the same Redis adopts it. One reissue in all.
    """
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    async with FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now) as api:
        clients = [
            AccountClient(api.root_key, base_url=api.base_url, clock=clock) for _ in range(2)
        ]
        stores = [RedisKeyStore(redis_server.url, name=store_name) for _ in range(2)]
        rotator, other = (KeyRotator(c, store=s) for c, s in zip(clients, stores, strict=True))
        fired: list[str] = []

        def on_rotate(event: RotationEvent) -> None:
            fired.append(event.key_id)

        rotator.on_rotate(on_rotate)
        try:
            await rotator.check()
            await other.check()
            before = await _load(stores[0])

            async def restart_redis(step: Step) -> None:
                if step is Step.REISSUED:
                    await redis_client.flushall()

            after_step(rotator, restart_redis)
            event = await rotator.rotate_now()
            await other.check()

            record = await _load(stores[1])
            assert record.key == event.new_key == clients[0].api_key == clients[1].api_key
            assert (record.generation, record.pending) == (1, None)
            assert api.is_active(record.key)
            assert fired == [event.key_id]
            assert api.reissues == 1
            assert record.lineage != before.lineage
        finally:
            for r in (rotator, other):
                await r.stop()
            for s in stores:
                await s.aclose()
            for c in clients:
                await c.aclose()


async def _load(store: RedisKeyStore) -> KeyRecord:
    """The stored record, which must be there."""
    record = await store.load()
    assert record is not None
    return record
