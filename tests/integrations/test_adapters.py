"""`KeyMiddleware` (aiohttp) and `KeyAuth` (httpx) against the fake API over TCP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from cs2cap_account import AccountClient, FakeClock, KeyRotator, MemoryKeyStore
from cs2cap_account.integrations.aiohttp import KeyMiddleware
from cs2cap_account.integrations.httpx import KeyAuth
from cs2cap_account.testing import FakeCS2CapAPI
from integrations._support import CALLERS

pytestmark = pytest.mark.parametrize("adapter", sorted(CALLERS))

BOUND = 30.0  # seconds: a stuck worker fails the test rather than hanging it


@pytest.mark.cs2cap_fake(rate_limits=False)  # thousands of calls on a clock that stands still
async def test_every_call_succeeds_while_the_key_rotates_under_a_busy_client(
    adapter: str, tcp_fake: FakeCS2CapAPI, tcp_fake_client: AccountClient
) -> None:
    """Eight workers call the API without pause through the adapted client while the
    key is rotated three times: every call answers 200, none causes a reissue.

    Each rotation waits until every worker has finished a call started after the one
    before (a single call refused twice, by two rotations, is not a case of days-apart
    rotations).
    """
    rotator = KeyRotator(tcp_fake_client, store=MemoryKeyStore())
    url = f"{tcp_fake.base_url}/account/key"
    statuses: list[int] = []
    errors: list[Exception] = []
    rotations = [0]
    caught_up = [0] * 8  # per worker: the rotations its latest finished call started after
    done = asyncio.Event()
    progress = asyncio.Event()
    async with CALLERS[adapter](rotator) as get:

        async def worker(index: int) -> None:
            while not done.is_set():
                started_after = rotations[0]
                try:
                    statuses.append(await get(url))
                except Exception as exc:  # a failed call fails the test, with its reason
                    errors.append(exc)
                    done.set()
                caught_up[index] = started_after
                progress.set()

        workers = [asyncio.ensure_future(worker(i)) for i in range(8)]

        async def every_worker_caught_up() -> None:
            while min(caught_up) < rotations[0] and not errors:
                progress.clear()
                await progress.wait()

        for _ in range(3):
            await _bounded(every_worker_caught_up())
            if errors:
                break
            await asyncio.sleep(0.005)  # calls in flight across the reissue
            await rotator.rotate_now()
            rotations[0] += 1
        await _bounded(every_worker_caught_up())
        done.set()
        await asyncio.gather(*workers)
    assert errors == []
    assert tcp_fake.reissues == 3, "only the rotator reissued"
    assert statuses and set(statuses) == {200}


async def test_a_401_reloads_the_key_another_process_saved_and_resends_once(
    adapter: str, tcp_fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """Another process rotated (same store): this rotator still holds the revoked key.
    The adapted call is refused, the newer key is read from the store, and the call is
    sent again with it, once.
    """
    store = MemoryKeyStore()
    async with (
        AccountClient(tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock) as mine,
        AccountClient(tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock) as theirs,
    ):
        here = KeyRotator(mine, store=store)
        await _initialise(here)
        elsewhere = KeyRotator(theirs, store=store)
        event = await elsewhere.rotate_now()
        assert here.current_key != event.new_key
        calls_before = tcp_fake.requests.get("get_key", 0)
        async with CALLERS[adapter](here) as get:
            status = await get(f"{tcp_fake.base_url}/account/key")
        assert status == 200
        assert tcp_fake.requests.get("get_key", 0) - calls_before == 2, "refused, then resent"
        assert tcp_fake.reissues == 1


async def test_a_401_with_no_newer_key_stands(
    adapter: str, tcp_fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """The key was reissued outside the rotator and its store: nothing newer to reload,
    so the 401 is the answer; the adapter never reissues.
    """
    async with (
        AccountClient(tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock) as mine,
        AccountClient(tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock) as outside,
    ):
        rotator = KeyRotator(mine, store=MemoryKeyStore())
        await _initialise(rotator)
        await outside.reissue_key()
        async with CALLERS[adapter](rotator) as get:
            status = await get(f"{tcp_fake.base_url}/account/key")
    assert status == 401
    assert tcp_fake.reissues == 1, "the one made outside; none by the adapter"


async def _initialise(rotator: KeyRotator) -> None:
    """The rotator's first look: the store gets its key."""
    await rotator._catch_up.catch_up()


def test_the_adapters_need_a_rotator(adapter: str) -> None:
    """Anything but a KeyRotator is refused with TypeError."""
    make: Any = {"aiohttp": KeyMiddleware, "httpx": KeyAuth}[adapter]
    with pytest.raises(TypeError, match="needs a KeyRotator"):
        make(object())


def test_key_auth_refuses_a_sync_client(adapter: str, fake_client: AccountClient) -> None:
    """httpx.Client (sync) cannot read the store: a clear error, not a silent stale key."""
    if adapter != "httpx":
        return
    auth = KeyAuth(KeyRotator(fake_client))
    with httpx.Client(auth=auth) as client, pytest.raises(RuntimeError, match="AsyncClient"):
        client.get("http://127.0.0.1:9/")


async def _bounded(aw: Awaitable[None]) -> None:
    """`aw` within BOUND seconds; on a timeout, the stuck workers' stacks go to stderr."""
    try:
        await asyncio.wait_for(aw, BOUND)
    except asyncio.TimeoutError:
        for task in asyncio.all_tasks():
            if "worker" in repr(task.get_coro()):
                print(_await_chain(task.get_coro()), file=sys.stderr)
        raise


def _await_chain(coro: object) -> str:
    """Where a stuck coroutine waits: every frame down its await chain."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        else:
            lines.append(repr(coro))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return "\n".join(lines)
