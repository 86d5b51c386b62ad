"""How long after a reissue every process of an eight-process fleet uses the new key.

Eight worker processes run a `KeyRotator` on one `RedisKeyStore` (default settings: the
five-second poll only backs up the change channel). Twenty times, one of them rotates;
for each rotation this measures, from the moment the fake API carried out the reissue
to the moment each other process's rotator announced the new key (its client already
switched), the latency of each follower and of the last one. The numbers are printed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import RedisKeyStore
from cs2cap_account.testing import FakeCS2CapAPI

from ._fleet import Fleet, ReissueLog, Report
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

FLEET_SIZE = 8
ROTATIONS = 20


def of_generation(generation: int) -> Callable[[Report], bool]:
    """A report filter: events announcing `generation`."""
    return lambda report: bool(report["generation"] == generation)


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (linear interpolation between ranks)."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def test_reissue_to_all_followers_swapped_latency(
    redis_server: RedisServer,
    redis_client: Redis,
    store_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each of 20 rotations reaches all seven followers (one event each, for the new
    generation and key) well within a second; median and p99 are printed.
    """
    store = RedisKeyStore(redis_server.url, name=store_name)
    api = FakeCS2CapAPI(rate_limits=False)
    log = ReissueLog(api, store)
    log.install()
    last: list[float] = []
    each: list[float] = []
    async with api:
        fleet = Fleet(redis_client, redis_server.url, api, store_name, tmp_path, forked=True)
        try:
            workers = await fleet.start(FLEET_SIZE)
            for turn in range(ROTATIONS):
                leader = workers[turn % FLEET_SIZE]
                generation = turn + 2
                await fleet.send([leader], "rotate")
                rotated = await fleet.report("rotated", leader)
                events = await fleet.reports("event", FLEET_SIZE, of_generation(generation))
                assert rotated["ok"], rotated
                assert {e["sha256"] for e in events} == {rotated["sha256"]}
                followers = [e for e in events if e["worker"] != leader]
                assert sorted(e["worker"] for e in followers) == sorted(
                    w for w in workers if w != leader
                )
                assert {e["reason"] for e in followers} == {"adopted"}
                reissued_at = log.reissues[turn].at
                delays = [e["t"] - reissued_at for e in followers]
                each.extend(delays)
                last.append(max(delays))
        finally:
            await fleet.close()
            await store.aclose()
    assert api.reissues == ROTATIONS
    assert max(last) < 1.0, last
    with capsys.disabled():
        print(
            f"\nreissue -> all {FLEET_SIZE - 1} followers swapped, {ROTATIONS} rotations: "
            f"median {statistics.median(last) * 1000:.1f} ms, "
            f"p99 {percentile(last, 0.99) * 1000:.1f} ms, max {max(last) * 1000:.1f} ms; "
            f"per follower: median {statistics.median(each) * 1000:.1f} ms, "
            f"p99 {percentile(each, 0.99) * 1000:.1f} ms"
        )
