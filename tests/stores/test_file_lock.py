"""`FileKeyStore.lock()`: one holder at a time, in one process and across processes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cs2cap_account import FakeClock
from cs2cap_account.stores import FileKeyStore

from ._support import touch

HERE = Path(__file__).parent
BOUND = 30.0


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    """Where the key file lives; the lock file sits beside it."""
    return tmp_path / "key.json"


def lock_file(key_path: Path) -> Path:
    """The store's rotation lock file."""
    return key_path.with_name(key_path.name + ".lock")


def lock_is_free(key_path: Path) -> bool:
    """Whether an exclusive `flock` on the lock file can be taken right now (and drop it)."""
    fd = os.open(lock_file(key_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the lock if it was taken
    return True


async def enter_and_leave(store: FileKeyStore) -> None:
    """Take the store's lock and let it go at once."""
    async with store.lock():
        pass


async def test_a_held_lock_is_a_real_os_lock(key_path: Path) -> None:
    """While `lock()` is held, an exclusive `flock` by anyone else fails; after, it succeeds."""
    async with FileKeyStore(key_path).lock():
        assert not lock_is_free(key_path)
    assert lock_is_free(key_path)


async def test_one_handle_serialises_its_own_holders(key_path: Path) -> None:
    """Two tasks sharing one `FileKeyStore` take turns: the second enters after the first left."""
    store = FileKeyStore(key_path)
    order: list[str] = []
    first_in = asyncio.Event()
    let_first_go = asyncio.Event()

    async def first() -> None:
        async with store.lock():
            order.append("first in")
            first_in.set()
            await let_first_go.wait()
            order.append("first out")

    async def second() -> None:
        async with store.lock():
            order.append("second in")

    first_task = asyncio.create_task(first())
    await asyncio.wait_for(first_in.wait(), BOUND)
    second_task = asyncio.create_task(second())
    done, _ = await asyncio.wait([second_task], timeout=0.2)
    assert not done
    let_first_go.set()
    await asyncio.wait_for(asyncio.gather(first_task, second_task), BOUND)
    assert order == ["first in", "first out", "second in"]


async def test_a_cancelled_wait_for_the_lock_leaves_nothing_held(key_path: Path) -> None:
    """A `lock()` cancelled while it waits never takes the lock later.

    (`rotator.stop()` cancels a rotation waiting for the lock.) Once the holder lets go,
    the lock is free and stays free, and the next `lock()` gets it.
    """
    holder = FileKeyStore(key_path)
    async with holder.lock():
        waiter = asyncio.create_task(enter_and_leave(FileKeyStore(key_path)))
        done, _ = await asyncio.wait([waiter], timeout=0.2)
        assert not done
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(waiter, BOUND)

    # Anything still waiting on the cancelled attempt's behalf would grab the lock now.
    for _ in range(5):
        await asyncio.sleep(0.02)
        assert lock_is_free(key_path)
    await asyncio.wait_for(enter_and_leave(FileKeyStore(key_path)), BOUND)


@pytest.fixture
async def lock_holder(key_path: Path, tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subprocess holding the store's lock until `tmp_path / "release"` appears."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "_lock_holder.py"),
        str(key_path),
        str(tmp_path / "release"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(proc: asyncio.subprocess.Process) -> str:
    """The next line the subprocess prints, within the bound."""
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), BOUND)).decode().strip()


async def test_the_lock_excludes_another_process(
    key_path: Path, tmp_path: Path, lock_holder: asyncio.subprocess.Process
) -> None:
    """A subprocess holding the lock blocks this process's `lock()` until it lets go.

    The child's hold is proven with a non-blocking `flock`; this process enters only after
    the release file was created and the child said it was releasing.
    """
    assert await read_line(lock_holder) == "locked"
    assert not lock_is_free(key_path)

    entered = asyncio.Event()

    async def enter() -> None:
        async with FileKeyStore(key_path).lock():
            entered.set()

    attempt = asyncio.create_task(enter())
    done, _ = await asyncio.wait([attempt], timeout=0.3)
    assert not done
    assert not entered.is_set()

    touch(tmp_path / "release")
    assert await read_line(lock_holder) == "releasing"
    await asyncio.wait_for(attempt, BOUND)
    assert entered.is_set()
    assert await read_line(lock_holder) == "released"
    assert await asyncio.wait_for(lock_holder.wait(), BOUND) == 0


async def test_a_waiter_polls_the_lock_on_the_stores_clock(key_path: Path) -> None:
    """A handle made with `clock=` waits for a held lock on that clock: its polls back off
    from 1 ms, doubling up to 50 ms, as virtual sleeps; it enters once the lock is free.
    """
    clock = FakeClock()
    waiter = FileKeyStore(key_path, clock=clock)
    async with FileKeyStore(key_path).lock():
        entering = asyncio.create_task(enter_and_leave(waiter))
        for _ in range(20):  # each turn of the loop lets the waiter poll once
            await asyncio.sleep(0)
        assert len(clock.sleeps) >= 8
        assert not entering.done()
    await asyncio.wait_for(entering, BOUND)
    assert clock.sleeps[:8] == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05])
    assert max(clock.sleeps) == pytest.approx(0.05)
