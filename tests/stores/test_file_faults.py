"""`FileKeyStore` under hostile conditions: a stripping umask, odd files at its paths, a
cipher that writes what it cannot read, bad arguments, and a save cancelled mid-write.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from cs2cap_account import StoreError
from cs2cap_account.stores import FileKeyStore, KeyRecord

from ._support import ROOT_2, ROOT_3, leaked, mode_of, read_bytes, simple_record

# A bound for what must not hang: far above what any of it takes, far below forever.
NO_HANG = 10.0


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    """Where the key file lives (not created yet)."""
    return tmp_path / "key.json"


@pytest.fixture
def stripping_umask() -> Iterator[None]:
    """Run with umask 0477: files would be created write-only for their owner (0200)."""
    old = os.umask(0o477)
    try:
        yield
    finally:
        os.umask(old)


def _lock_paths(key_path: Path) -> list[Path]:
    return [key_path.with_name(key_path.name + suffix) for suffix in (".lock", ".save.lock")]


@pytest.mark.usefixtures("stripping_umask")
async def test_a_umask_that_strips_owner_read_still_leaves_0600_files(key_path: Path) -> None:
    """Under umask 0477 the key file and both lock files are 0600, and the chain of saves
    (each a compare-and-set that reads the file back) goes on working.
    """
    store = FileKeyStore(key_path)
    async with store.lock():
        await store.save(simple_record(1), expected_generation=None)
        await store.save(simple_record(2, ROOT_2), expected_generation=1)

    assert mode_of(key_path) == 0o600
    assert [mode_of(p) for p in _lock_paths(key_path)] == [0o600, 0o600]
    assert await FileKeyStore(key_path).load() == simple_record(2, ROOT_2)


# -- what is at the key path or a lock path ------------------------------------------------


def _make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def _make_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def _unblock_fifo(path: Path) -> None:
    """Open the FIFO's write end, so a reader stuck opening it (the bug) is let go."""
    with suppress(OSError):  # no reader: nothing is stuck
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def test_a_fifo_at_the_key_path_is_refused_not_waited_on(key_path: Path) -> None:
    """A FIFO where the key file should be: `load()` and `save()` raise `StoreError` naming
    the path at once, instead of blocking until something writes to it.
    """
    _make_fifo(key_path)
    store = FileKeyStore(key_path)
    try:
        with pytest.raises(StoreError, match="not a regular file") as loading:
            await asyncio.wait_for(store.load(), NO_HANG)
        with pytest.raises(StoreError, match="not a regular file"):
            await asyncio.wait_for(store.save(simple_record(1), expected_generation=None), NO_HANG)
    finally:
        _unblock_fifo(key_path)
    assert str(key_path) in str(loading.value)


async def test_a_socket_at_the_key_path_is_refused(key_path: Path) -> None:
    """A Unix socket where the key file should be is refused with a `StoreError` naming it."""
    sock = _make_socket(key_path)
    try:
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(FileKeyStore(key_path).load(), NO_HANG)
    finally:
        sock.close()
    assert str(key_path) in str(caught.value)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("suffix", [".lock", ".save.lock"])
async def test_a_lock_path_that_is_not_a_file_is_refused(
    key_path: Path, kind: str, suffix: str
) -> None:
    """A FIFO or a directory at a lock path: `StoreError` naming it, no lock pretended."""
    lock_path = key_path.with_name(key_path.name + suffix)
    if kind == "fifo":
        _make_fifo(lock_path)
    else:
        lock_path.mkdir()
    store = FileKeyStore(key_path)

    async def lock_and_save() -> None:
        async with store.lock():
            await store.save(simple_record(1), expected_generation=None)

    try:
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(lock_and_save(), NO_HANG)
    finally:
        if kind == "fifo":
            _unblock_fifo(lock_path)
    assert str(lock_path) in str(caught.value)


# -- every save proves it reads back ------------------------------------------------------


async def test_a_save_that_would_not_read_back_keeps_the_previous_key(key_path: Path) -> None:
    """A save whose bytes the store itself cannot read back (here a cipher that writes with
    a key it does not read with) raises `StoreError`; the file still holds, byte for byte,
    the record before it, and no temporary file is left.
    """
    pytest.importorskip("cryptography")
    from cryptography.fernet import Fernet

    from cs2cap_account.stores._cipher import RecordCipher

    class WritesWithAnotherKey(RecordCipher):
        """Reads with one Fernet key, writes with another."""

        __slots__ = ("_writing",)

        def __init__(self, reading: bytes, writing: bytes) -> None:
            super().__init__(reading)
            self._writing = RecordCipher(writing)

        def seal(self, data: bytes) -> bytes:
            return self._writing.seal(data)

    reading = Fernet.generate_key()
    await FileKeyStore(key_path, cipher=reading).save(simple_record(1), expected_generation=None)
    before = read_bytes(key_path)
    store = FileKeyStore(key_path, cipher=WritesWithAnotherKey(reading, Fernet.generate_key()))

    with pytest.raises(StoreError, match="does not read back") as caught:
        await store.save(simple_record(2, ROOT_2), expected_generation=1)

    assert leaked(str(caught.value)) == []
    assert read_bytes(key_path) == before
    assert await FileKeyStore(key_path, cipher=reading).load() == simple_record(1)
    assert [p.name for p in key_path.parent.iterdir() if p.name.endswith(".tmp")] == []


async def test_a_save_that_reads_back_as_another_record_is_refused(key_path: Path) -> None:
    """Bytes that parse, but into another record than the one saved (here a cipher that
    seals the wrong plaintext), are not put in place: `StoreError`, previous key intact.
    """
    pytest.importorskip("cryptography")
    from cryptography.fernet import Fernet

    from cs2cap_account.stores._cipher import RecordCipher
    from cs2cap_account.stores._record import dump_record

    class SealsAnotherRecord(RecordCipher):
        """Encrypts the record of generation 1 whatever it is given."""

        __slots__ = ()

        def seal(self, data: bytes) -> bytes:
            return super().seal(dump_record(simple_record(1)))

    key = Fernet.generate_key()
    await FileKeyStore(key_path, cipher=key).save(simple_record(1), expected_generation=None)
    before = read_bytes(key_path)

    with pytest.raises(StoreError, match="another record"):
        await FileKeyStore(key_path, cipher=SealsAnotherRecord(key)).save(
            simple_record(2, ROOT_2), expected_generation=1
        )

    assert read_bytes(key_path) == before


# -- arguments ------------------------------------------------------------------------------


class _BytesPath:
    """An `os.PathLike` whose path is bytes."""

    def __fspath__(self) -> bytes:
        return b"key.json"


@pytest.mark.parametrize("path", [b"key.json", _BytesPath(), 5, None, 1.5])
def test_a_path_of_the_wrong_type_is_a_type_error(path: object) -> None:
    """Bytes, numbers and None are not a key file path: `TypeError` naming the type."""
    with pytest.raises(TypeError, match="path"):
        FileKeyStore(path)  # type: ignore[arg-type]


def test_an_empty_path_is_a_value_error() -> None:
    """An empty path (which would mean the current directory) is a `ValueError`."""
    with pytest.raises(ValueError, match="empty"):
        FileKeyStore("")


# -- a save cancelled while its thread writes -------------------------------------------------


class SlowWriteStore(FileKeyStore):
    """A file store whose write of the new file waits on `go`, as a slow disk would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = threading.Event()
        self.go = threading.Event()
        self.written = threading.Event()

    def _write_all(self, fd: int, data: bytes) -> None:
        self.writing.set()
        self.go.wait(NO_HANG)
        super()._write_all(fd, data)
        self.written.set()


async def test_a_cancelled_save_holds_the_lock_until_its_write_ends(key_path: Path) -> None:
    """Cancelling a save mid-write does not release the rotation lock (or return) before
    the worker thread's write is over; the next holder then reads what that write left,
    and its own save is the last word: no late write brings an older record back.
    """
    await FileKeyStore(key_path).save(simple_record(1), expected_generation=None)
    slow = SlowWriteStore(key_path)
    order: list[str] = []

    async def rotate() -> None:
        async with slow.lock():
            await slow.save(simple_record(2, ROOT_2), expected_generation=1)

    rotation = asyncio.create_task(rotate())
    assert await asyncio.to_thread(slow.writing.wait, NO_HANG)
    rotation.cancel()

    rival = FileKeyStore(key_path)

    async def next_rotation() -> KeyRecord | None:
        async with rival.lock():
            order.append("rival in")
            seen = await rival.load()
            if seen is not None:
                await rival.save(
                    simple_record(seen.generation + 1, ROOT_3),
                    expected_generation=seen.generation,
                )
            return seen

    follower = asyncio.create_task(next_rotation())
    # Every chance to get in while the cancelled save's thread is still writing.
    done, _ = await asyncio.wait([rotation, follower], timeout=0.2)
    assert done == set()
    order.append("write released")
    slow.go.set()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(rotation, NO_HANG)
    seen = await asyncio.wait_for(follower, NO_HANG)

    assert slow.written.is_set()
    assert order == ["write released", "rival in"]
    assert seen == simple_record(2, ROOT_2)
    assert await FileKeyStore(key_path).load() == simple_record(3, ROOT_3)
