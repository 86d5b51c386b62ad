"""docs/examples/taskgroup_service.py: a scheduled rotation inside an asyncio.TaskGroup."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

import pytest

from cs2cap_account import AccountClient, FakeClock, KeyRotator, ResponseEvent, RotationEvent
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import HeldSaveStore, load_example, sdk_tasks, until

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11+")

example = load_example("taskgroup_service")


async def test_an_aged_key_is_rotated_on_schedule_and_the_service_stops_cleanly(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock, responses: list[ResponseEvent]
) -> None:
    """The key is 40 days old and max_age is 30: the rotator's first scheduled check
    rotates it while the workers run. The new key's save is held back, so each worker's
    next call is refused with the old key; each is sent again with the new key once the
    client holds it, and the workers carry on. Setting `stop` ends every task, and the
    rotation's journal is closed in the store.
    """
    api.age_root_key(dt.timedelta(days=40))
    old_key = client.api_key
    assert old_key is not None
    store = HeldSaveStore()
    rotator = KeyRotator(client, store=store, max_age=dt.timedelta(days=30), check_interval=60)
    rotated: asyncio.Future[RotationEvent] = asyncio.get_running_loop().create_future()
    rotator.on_rotate(rotated.set_result)
    stop = asyncio.Event()
    stats = example.Stats()
    service = asyncio.create_task(
        example.serve(client, rotator, stop, workers=3, interval=1.0, stats=stats)
    )

    def refused() -> int:
        return sum(response.status_code == 401 for response in responses)

    try:
        await asyncio.wait_for(store.holding.wait(), 10)
        await until(lambda: service.done() or refused() == 3)  # one call per worker
    finally:
        store.release()  # a failure above must not leave the rotation held
    event = await asyncio.wait_for(rotated, 10)
    assert event.reason == "max_age"
    await until(lambda: service.done() or event.key_id in stats.key_ids)
    stop.set()
    assert await asyncio.wait_for(service, 10) is stats

    assert stats.key_ids == [event.previous_key_id, event.key_id], "workers followed the key"
    assert refused() == 3, "only the calls sent while the save was held were refused"
    assert api.reissues == 1
    assert not api.is_active(old_key)
    assert api.is_active(event.new_key) and client.api_key == event.new_key
    record = await store.load()
    assert record is not None
    assert (record.generation, record.key, record.pending) == (2, event.new_key, None)
    assert sdk_tasks() == [], "no task outlives serve()"
