"""docs/examples/worker_pool.py: every worker swaps keys through an on_rotate callback."""

from __future__ import annotations

import asyncio

from cs2cap_account import AccountClient, FakeClock, KeyRotator
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import HeldSaveStore, load_example, until

example = load_example("worker_pool")


async def test_every_worker_keeps_succeeding_across_a_rotation(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Three workers call the API nonstop; the key is rotated mid-run, its new key's save
    held back so that each worker's next call is refused with the revoked key. No call
    fails: each refused call is sent again with the new key. The callback then hands each
    worker the new key, and no call begun after the swap meets a 401.
    """
    store = HeldSaveStore()
    rotator = KeyRotator(client, store=store)
    pool = await example.WorkerPool.create(client, rotator, size=3)
    old_key = client.api_key
    assert old_key is not None
    stop = asyncio.Event()
    running = asyncio.create_task(pool.run(stop))
    try:
        await until(lambda: all(worker.calls >= 5 for worker in pool.workers))
        rotating = asyncio.create_task(rotator.rotate_now())
        try:
            await asyncio.wait_for(store.holding.wait(), 10)
            await until(lambda: running.done() or all(w.unauthorized for w in pool.workers))
        finally:
            store.release()  # a failure above must not leave the rotation held
        event = await rotating
        await until(
            lambda: running.done() or all(w.calls - w.swapped_at >= 5 for w in pool.workers)
        )
    finally:
        stop.set()
        await running  # re-raises any worker's error: none may fail
        await pool.aclose()

    assert api.reissues == 1
    assert not api.is_active(old_key)
    for worker in pool.workers:
        assert worker.client.api_key == event.new_key, worker.name
        assert worker.swapped_at >= 5, f"{worker.name} worked before the swap"
        assert all(number < worker.swapped_at for number in worker.unauthorized), (
            f"{worker.name} met a 401 after the swap"
        )
        # Only the call sent while the new key's save was held meets a 401; it waits for
        # the rotator's client to switch and is sent again with the new key.
        assert len(worker.unauthorized) == 1, worker.name


async def test_workers_split_the_rate_budget_and_pacing_costs_no_real_time(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """Each worker is paced at its share of the key's per-minute rate (one share kept for
    the rotator), so the fake never answers 429; the waits are virtual, on the FakeClock.
    """
    rotator = KeyRotator(client)
    pool = await example.WorkerPool.create(client, rotator, size=3)
    stop = asyncio.Event()
    running = asyncio.create_task(pool.run(stop))
    try:
        # 300 a minute for the key, 75 for each worker: 100 calls each take over a minute.
        await until(lambda: all(worker.calls >= 100 for worker in pool.workers))
    finally:
        stop.set()
        await running
        await pool.aclose()
    assert clock.monotonic() - clock.start >= 60.0
    calls = sum(worker.calls for worker in pool.workers)
    assert api.requests["get_key"] == calls + 1, "one request per call (and create()'s): no retry"
