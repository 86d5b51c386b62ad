"""Running the rotator: start/stop, async with, TaskGroup, aiohttp apps, a loop that lives."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationEvent
from cs2cap_account.testing import FakeCS2CapAPI


def first_event(rotator: KeyRotator) -> asyncio.Future[RotationEvent]:
    """A future resolved by the rotator's first announced event."""
    future: asyncio.Future[RotationEvent] = asyncio.get_running_loop().create_future()

    @rotator.on_rotate
    def resolve(event: RotationEvent) -> None:
        if not future.done():
            future.set_result(event)

    return future


def sdk_tasks() -> list[asyncio.Task[object]]:
    """Unfinished tasks running the SDK's own code (the fake server's are not counted)."""
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and "cs2cap_account/testing" not in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
        and "cs2cap_account" in task.get_coro().cr_code.co_filename  # type: ignore[union-attr]
    ]


async def test_stop_leaves_no_task_behind(api: FakeCS2CapAPI, client: AccountClient) -> None:
    """start() runs the schedule; stop() ends it and every task it made."""
    rotator = KeyRotator(client, max_age=dt.timedelta(days=30))
    task = rotator.start()
    assert rotator.start() is task, "start() is idempotent while running"
    await asyncio.sleep(0.05)
    await rotator.stop()
    assert task.done()
    assert sdk_tasks() == []


async def test_failing_checks_are_logged_and_retried_never_killing_the_loop(
    api: FakeCS2CapAPI, client: AccountClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Checks failing with 500s are logged and retried with backoff; the loop goes on
    and rotates the aged key once the API answers again.
    """
    api.age_root_key(dt.timedelta(days=40))
    api.faults.fail("get_key", status=500, times=9)
    rotator = KeyRotator(client.with_options(max_retries=0), max_age=dt.timedelta(days=30))
    rotated = first_event(rotator)
    async with rotator:
        event = await asyncio.wait_for(rotated, 10)
    assert event.reason == "max_age"
    failures = [r for r in caplog.records if "rotation check failed" in r.getMessage()]
    assert len(failures) >= 8
    assert all(r.levelno == logging.ERROR for r in failures)


async def test_runs_inside_a_task_group(api: FakeCS2CapAPI, client: AccountClient) -> None:
    """rotator.run() is an ordinary coroutine a TaskGroup can own and cancel."""
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.TaskGroup is Python 3.11+")
    api.age_root_key(dt.timedelta(days=40))
    rotator = KeyRotator(client, max_age=dt.timedelta(days=30))
    rotated = first_event(rotator)
    async with asyncio.TaskGroup() as group:
        runner = group.create_task(rotator.run())
        event = await asyncio.wait_for(rotated, 10)
        runner.cancel()
    assert event.generation == 2
    assert api.is_active(rotator.current_key)


async def test_attached_to_an_aiohttp_app_for_its_lifetime(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """attach(app): the schedule runs while the app runs and stops at its cleanup."""
    api.age_root_key(dt.timedelta(days=40))
    rotator = KeyRotator(client, max_age=dt.timedelta(days=30))
    rotated = first_event(rotator)
    app = web.Application()
    rotator.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        event = await asyncio.wait_for(rotated, 10)
        assert event.reason == "max_age"
    finally:
        await runner.cleanup()
    reissues = api.reissues
    await asyncio.sleep(0.05)
    assert api.reissues == reissues == 1, "no rotation after the app's cleanup"


async def test_current_key_follows_rotations(api: FakeCS2CapAPI, client: AccountClient) -> None:
    """current_key is the key in force, for code that builds its own clients."""
    rotator = KeyRotator(client)
    assert rotator.current_key == api.root_key
    await rotator.rotate_now()
    assert rotator.current_key == api.root_key == client.api_key


def test_constructor_rejects_nonsense() -> None:
    """Bad settings fail at construction with a clear ValueError."""
    client = AccountClient("sk_live_root_" + "a" * 32, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="check_interval"):
        KeyRotator(client, check_interval=0)
    with pytest.raises(ValueError, match="jitter"):
        KeyRotator(client, jitter=1.5)
    with pytest.raises(ValueError, match="max_age"):
        KeyRotator(client, max_age=-1)
    token_only = AccountClient(
        session_token="eyJhbGciOi.eyJzdWIiOi.sig", base_url="http://127.0.0.1:9/v1"
    )
    with pytest.raises(ValueError, match="root API key"):
        KeyRotator(token_only)


async def test_a_broken_change_feed_never_outlives_stop(
    api: FakeCS2CapAPI, client: AccountClient
) -> None:
    """A store whose change feed raises something unexpected is followed again, and stop()
    still ends every task the rotator made.
    """
    attempts = 0

    class BrokenFeedStore(MemoryKeyStore):
        async def changes(self) -> AsyncIterator[int]:
            nonlocal attempts
            attempts += 1
            yield 1
            raise ValueError("junk on the channel")

    rotator = KeyRotator(client, store=BrokenFeedStore())
    task = rotator.start()
    for _ in range(200):
        if attempts >= 2:
            break
        await asyncio.sleep(0.005)
    assert attempts >= 2, "the follower picked itself up after the error"
    assert not task.done()
    await rotator.stop()
    assert task.done()
    assert sdk_tasks() == []
