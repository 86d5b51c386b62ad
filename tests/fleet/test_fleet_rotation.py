"""Eight processes, each with its own client, rotator and `RedisKeyStore`, rotate at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import RedisKeyStore
from cs2cap_account.testing import FakeCS2CapAPI

from ._fleet import Fleet, ReissueLog
from ._records import sha256
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

FLEET_SIZE = 8


@pytest.fixture
async def store(redis_server: RedisServer, store_name: str) -> AsyncIterator[RedisKeyStore]:
    """The test's own handle on the fleet's store."""
    handle = RedisKeyStore(redis_server.url, name=store_name)
    yield handle
    await handle.aclose()


async def test_eight_processes_rotating_at_once_reissue_once_and_all_use_the_new_key(
    redis_server: RedisServer,
    redis_client: Redis,
    store: RedisKeyStore,
    store_name: str,
    tmp_path: Path,
) -> None:
    """Eight workers get `rotate` in one Redis transaction and call `rotate_now()` together.

    The lease lets exactly one reissue; the seven others wait for it and adopt its key.
    The store starts empty, so their start-up also races to initialise it (one does).
    Every worker then makes a successful `get_key()` with that key (compared by SHA-256)
    within one second of the reissue, the store holds it at the next generation with no
    open journal, and no worker's output holds a key.
    """
    api = FakeCS2CapAPI(rate_limits=False)
    log = ReissueLog(api, store)
    log.install()
    async with api:
        old_key = api.root_key
        fleet = Fleet(redis_client, redis_server.url, api, store_name, tmp_path)
        try:
            workers = await fleet.start(FLEET_SIZE)
            await fleet.send(workers, "rotate")
            reports = await fleet.reports("rotated", FLEET_SIZE)
        finally:
            await fleet.close()

        stored = await store.load()
        assert stored is not None
        assert api.reissues == 1
        assert [r.by_session for r in log.reissues] == [False]
        assert [r.get("rotate_error") for r in reports] == [None] * FLEET_SIZE
        assert all(r["ok"] for r in reports), reports
        assert {r["sha256"] for r in reports} == {sha256(stored.key)}
        assert stored.key == api.root_key
        assert not api.is_active(old_key)
        assert (stored.generation, stored.pending, stored.kept_aside) == (2, None, ())
        assert sorted(r["reason"] for r in reports) == ["adopted"] * 7 + ["manual"]
        assert {r["event_generation"] for r in reports} == {2}
        reissued_at = log.reissues[0].at
        late = [r["t"] - reissued_at for r in reports if r["t"] - reissued_at > 1.0]
        assert late == []
        assert fleet.leaks() == []
