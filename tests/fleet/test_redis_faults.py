"""`RedisKeyStore` when Redis stops answering, and when its caller is cancelled mid-command.

Each test here runs its own `redis-server`, since it freezes it (SIGSTOP) and thaws it
(SIGCONT, in teardown too, before it is stopped).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from cs2cap_account import RedisKeyStore, StoreError

from ._records import ROOT_2, leaked, record
from .conftest import RedisServer, start_redis_server, stop_redis_server

if TYPE_CHECKING:
    from redis.asyncio import Redis

# What a frozen-Redis test gives each store command: short, so the tests are quick.
TIMEOUT = 0.5
# How late, at most, a busy machine may run a timer or a thread: bounds add this much.
SLACK = 1.0
# Far above anything here takes when it works, far below forever: the bound for a hang.
NO_HANG = 15.0


@attrs.define
class FreezableServer:
    """A `redis-server` of a test's own, which the test can freeze and thaw."""

    proc: subprocess.Popen[bytes]
    server: RedisServer
    frozen: bool = False

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): connections stay open, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """Let the server run again (SIGCONT)."""
        if self.frozen:
            self.proc.send_signal(signal.SIGCONT)
            self.frozen = False


@pytest.fixture
def freezable(tmp_path: Path) -> Iterator[FreezableServer]:
    """A redis-server for this test alone; thawed, then stopped, whatever the test did."""
    pytest.importorskip("redis")
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    proc, port = start_redis_server(executable, tmp_path)
    server = FreezableServer(proc, RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port))
    try:
        yield server
    finally:
        server.thaw()
        stop_redis_server(proc)


@pytest.fixture
async def stores(freezable: FreezableServer) -> AsyncIterator[list[RedisKeyStore]]:
    """A list to put the test's stores in; each is closed (with the server thawed) after."""
    made: list[RedisKeyStore] = []
    yield made
    freezable.thaw()
    for store in made:
        await store.aclose()


async def _elapsed_until_store_error(operation: Awaitable[Any]) -> float:
    """Seconds `operation` took to raise `StoreError` (a hang fails after `NO_HANG`)."""
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await asyncio.wait_for(operation, NO_HANG)
    assert leaked(str(caught.value)) == []
    return time.monotonic() - started


# -- a frozen Redis ------------------------------------------------------------------------


async def _lock_and_wait(store: RedisKeyStore) -> None:
    async with store.lock():
        raise AssertionError("the lease cannot be taken from a frozen Redis")


@pytest.mark.parametrize("connection", ["url", "injected client"])
async def test_every_operation_on_a_frozen_redis_fails_within_the_timeout(
    freezable: FreezableServer, stores: list[RedisKeyStore], connection: str
) -> None:
    """With Redis frozen after the store connected, `load()`, `save()`, `generation()` and
    `lock()` each raise `StoreError` within the store's `timeout` (`lock()` within two: the
    lease it may have taken is then given back, as far as it can be), and `aclose()` ends
    as promptly: for the store's own pool from a URL, and for a client passed in that has
    no socket timeout of its own.
    """
    from redis.asyncio import Redis

    url = freezable.server.url
    target: str | Redis = url if connection == "url" else Redis.from_url(url)
    store = RedisKeyStore(target, name="frozen", timeout=TIMEOUT)
    stores.append(store)
    await store.save(record(1), expected_generation=None)
    freezable.freeze()

    took = {
        "load": await _elapsed_until_store_error(store.load()),
        "save": await _elapsed_until_store_error(
            store.save(record(2, ROOT_2), expected_generation=1)
        ),
        "generation": await _elapsed_until_store_error(store.generation()),
        "lock": await _elapsed_until_store_error(_lock_and_wait(store)),
    }
    started = time.monotonic()
    await asyncio.wait_for(store.aclose(), NO_HANG)
    took["aclose"] = time.monotonic() - started

    bounds = {"lock": 2 * TIMEOUT + SLACK, "aclose": TIMEOUT + SLACK}
    over = {op: t for op, t in took.items() if t > bounds.get(op, TIMEOUT + SLACK)}
    assert over == {}
    if isinstance(target, Redis):
        freezable.thaw()
        await target.aclose()


async def test_leaving_a_lock_while_redis_is_frozen_ends_promptly(
    freezable: FreezableServer, stores: list[RedisKeyStore]
) -> None:
    """A holder whose Redis freezes mid-rotation leaves the block within the timeout: the
    renewal task stops and the release gives up, both bounded, and no task is left over.
    """
    store = RedisKeyStore(freezable.server.url, name="frozen", lease_ttl=0.3, timeout=TIMEOUT)
    stores.append(store)
    before = asyncio.all_tasks()
    async with store.lock():
        freezable.freeze()
        await asyncio.sleep(0.2)  # a renewal (every 0.1 s) is now in flight, unanswered
        started = time.monotonic()
    took = time.monotonic() - started

    assert took <= TIMEOUT + SLACK
    assert asyncio.all_tasks() - before == set()


async def test_following_a_frozen_redis_fails_within_a_poll_and_the_timeout(
    freezable: FreezableServer, stores: list[RedisKeyStore]
) -> None:
    """`changes()` on a Redis that freezes: its next poll raises `StoreError` within one
    poll interval and the timeout, instead of waiting for ever on the subscription.
    """
    store = RedisKeyStore(freezable.server.url, name="frozen", poll_interval=0.2, timeout=TIMEOUT)
    stores.append(store)
    changes = store.changes()
    try:
        assert await asyncio.wait_for(anext(changes), NO_HANG) == 0
        freezable.freeze()
        took = await _elapsed_until_store_error(anext(changes))
    finally:
        freezable.thaw()
        await changes.aclose()
    assert took <= 0.2 * 1.1 + TIMEOUT + SLACK


async def test_a_thawed_redis_serves_the_same_store_again(
    freezable: FreezableServer, stores: list[RedisKeyStore]
) -> None:
    """A timeout does not spoil the store: once Redis answers again the next calls work."""
    store = RedisKeyStore(freezable.server.url, name="thawed", timeout=TIMEOUT)
    stores.append(store)
    await store.save(record(1), expected_generation=None)
    freezable.freeze()
    await _elapsed_until_store_error(store.load())
    freezable.thaw()

    assert await asyncio.wait_for(store.load(), NO_HANG) == record(1)
    await store.save(record(2, ROOT_2), expected_generation=1)
    assert await store.load() == record(2, ROOT_2)


# -- a lock() cancelled while a lease command is in flight -----------------------------------


def _signalling_client(url: str, sent: asyncio.Event, command: bytes) -> Redis:
    """A client that sets `sent` once `command` has been written to the server's socket."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.connection import Connection

    class Signalling(Connection):
        async def send_packed_command(self, packed: Any, check_health: bool = True) -> None:
            await super().send_packed_command(packed, check_health)
            parts = [packed] if isinstance(packed, (bytes, str)) else list(packed)
            text = b"".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)
            if command in text:
                sent.set()

    return Redis(connection_pool=ConnectionPool.from_url(url, connection_class=Signalling))


async def test_a_lock_cancelled_while_set_nx_is_in_flight_leaves_no_lease(
    freezable: FreezableServer, stores: list[RedisKeyStore]
) -> None:
    """`lock()` cancelled after its `SET NX` reached a frozen server, before the answer:
    once the server runs again and takes the lease, the cancelled `lock()` gives it back
    before it raises `CancelledError`. The lease key is gone and another store's `lock()`
    gets in at once, not after the 30 s lease.
    """
    sent = asyncio.Event()
    client = _signalling_client(freezable.server.url, sent, b"\r\nSET\r\n")
    try:
        await _cancel_lock_while_set_is_in_flight(freezable, stores, client, sent)
    finally:
        freezable.thaw()
        await client.aclose(close_connection_pool=True)


async def _cancel_lock_while_set_is_in_flight(
    freezable: FreezableServer, stores: list[RedisKeyStore], client: Redis, sent: asyncio.Event
) -> None:
    from redis.asyncio import Redis

    store = RedisKeyStore(client, name="cancel", lease_ttl=30.0, timeout=NO_HANG)
    rival = RedisKeyStore(freezable.server.url, name="cancel", lease_ttl=30.0)
    stores.extend([store, rival])
    await store.load()  # connected: the SET goes out on an open connection
    freezable.freeze()

    async def rotate() -> None:
        async with store.lock():
            raise AssertionError("cancelled before the lease was answered")

    rotation = asyncio.create_task(rotate())
    await asyncio.wait_for(sent.wait(), NO_HANG)
    rotation.cancel()
    await asyncio.sleep(0)
    freezable.thaw()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(rotation, NO_HANG)

    plain = Redis.from_url(freezable.server.url)
    try:
        assert await plain.exists("{cancel}:lease") == 0
    finally:
        await plain.aclose()

    async def take() -> None:
        async with rival.lock():
            pass

    await asyncio.wait_for(take(), 2.0)


# -- settings -------------------------------------------------------------------------------

BAD_SECONDS: list[tuple[object, type[Exception]]] = [
    (1e-9, ValueError),
    (0.0, ValueError),
    (-1.0, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    ("5", TypeError),
    (True, TypeError),
    (None, TypeError),
]


@pytest.mark.parametrize("setting", ["lease_ttl", "poll_interval", "timeout"])
@pytest.mark.parametrize(("value", "error"), BAD_SECONDS)
def test_a_duration_that_is_not_a_sane_number_of_seconds_is_refused(
    setting: str, value: object, error: type[Exception]
) -> None:
    """NaN, infinity, zero, negatives, a billionth of a second, strings, booleans: each is
    refused when the store is made, with an error naming the setting.
    """
    pytest.importorskip("redis")
    with pytest.raises(error, match=setting):
        RedisKeyStore("redis://127.0.0.1:1/0", **{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (5, TypeError), (None, TypeError)])
def test_a_name_that_is_not_a_non_empty_str_is_refused(
    name: object, error: type[Exception]
) -> None:
    """The store's name prefixes its Redis keys: it must be a non-empty str."""
    pytest.importorskip("redis")
    with pytest.raises(error, match="name"):
        RedisKeyStore("redis://127.0.0.1:1/0", name=name)  # type: ignore[arg-type]
