"""`FileKeyStore`: a JSON file that several processes on one host share safely."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TypeVar

from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account.errors import StoreError
from cs2cap_account.stores._cipher import (
    CipherKey,
    RecordCipher,
    make_cipher,
    open_record_bytes,
    seal_record_bytes,
)
from cs2cap_account.stores._memory import check_generation, check_lineage
from cs2cap_account.stores._record import KeyRecord, dump_record, load_record

__all__ = ["FileKeyStore"]

T = TypeVar("T")

# Every file the store opens: never through a symlink, never blocking on a FIFO or a device
# (each is refused once `fstat` shows it is not a regular file), never inherited by a child.
_SAFE_OPEN = getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
# The store's files are owner read/write, whatever the umask: created so, then set so.
_PRIVATE = 0o600
# What fsync on a directory answers where the filesystem does not support it.
_NO_DIRECTORY_SYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})
# How often a waiter retries the rotation lock: from 1 ms, doubling up to 50 ms.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


class FileKeyStore:
    """Keeps the key in a JSON file (mode 0600), replaced atomically on every save.

    A save writes a new file beside it, fsyncs it, renames it over the old one and
    fsyncs the directory, so a crash or a full disk leaves the previous key intact.
    An `fcntl` lock on `<path>.lock` serialises rotations of every process on the host;
    one on `<path>.save.lock` makes each save's compare-and-set atomic.
    The file is refused, with a clear error, if it is a symlink or readable by others.
    With `cipher=` (a Fernet key, or a list of them), the file holds the record encrypted.
    A waiter for the rotation lock polls it on `clock` (the system clock by default).

    Files are created mode 0600 whatever the process's umask. Anything but a regular
    file at the key path or a lock path (a FIFO, a directory, a socket, a device) is
    refused with `StoreError` at once, never opened for a blocking read. Every save reads
    what it wrote back through the store's own parser before putting it in place, and
    raises `StoreError` (the previous key intact) if it does not come back the same.
    The blocking I/O runs in a worker thread; a cancelled `load()` or `save()` waits for
    that thread's work to finish before it raises, so nothing is written after it returns.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cipher: CipherKey | RecordCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(_checked_path(path))
        self._clock: Clock = clock or SystemClock()
        self._where = f"the key file {self.path}"
        self._cipher = make_cipher(cipher)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._save_lock_path = self.path.with_name(self.path.name + ".save.lock")
        self._local = asyncio.Lock()

    def __repr__(self) -> str:
        path = getattr(self, "path", None)  # None on a half-built store
        return f"FileKeyStore({None if path is None else str(path)!r})"

    async def load(self) -> KeyRecord | None:
        """Read and parse the file; None if it does not exist yet."""
        return await _in_thread(self._read)

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Compare-and-set on the generation, then replace the file atomically."""
        await _in_thread(self._save, record, expected_generation)

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the host-wide rotation lock (and this process's).

        The `flock` is polled without blocking rather than awaited in a worker thread:
        a thread blocked in `flock` cannot be cancelled, and would take the lock after
        its caller was cancelled and keep it for the life of the process.
        """
        async with self._local:
            fd = _open_lock_file(self._lock_path)
            try:
                await _flock_polling(fd, self._lock_path, self._clock)
                yield
            finally:
                os.close(fd)  # closing the only descriptor drops the lock, if it was taken

    async def aclose(self) -> None:
        """Nothing stays open between calls."""

    # -- blocking parts, run in a worker thread ---------------------------------------

    def _read(self) -> KeyRecord | None:
        try:
            return self._read_file(self.path)
        except FileNotFoundError:
            return None

    def _read_file(self, path: Path) -> KeyRecord:
        """Parse the record in `path`; `FileNotFoundError` if there is none."""
        fd = _open_regular(path, os.O_RDONLY, what="the key file")
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o077:
                raise StoreError(
                    f"{path} is readable by others (mode {mode:04o}); "
                    f"refusing to use it: run `chmod 600 {path}`"
                )
            chunks = []
            while chunk := _read_some(fd, path):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = open_record_bytes(self._cipher, b"".join(chunks), source=self._where)
        return load_record(data, source=self._where)

    def _save(self, record: KeyRecord, expected_generation: int | None) -> None:
        data = seal_record_bytes(self._cipher, dump_record(record))
        # The check and the replace must be one step for every writer on the host, or two
        # saves from the same generation could both pass the check. A lock file of its
        # own, held only this long, so a save never waits for a whole rotation.
        fd = _open_lock_file(self._save_lock_path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise StoreError(f"cannot lock {self._save_lock_path}: {exc.strerror}") from exc
            stored = self._read()
            check_generation(stored, expected_generation, where=str(self.path))
            check_lineage(stored, record, where=str(self.path))
            self._replace(data, record)
        finally:
            os.close(fd)

    def _replace(self, data: bytes, record: KeyRecord) -> None:
        """Write `data` beside the key file, prove it reads back as `record`, rename it over."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE_OPEN, _PRIVATE)
            try:
                os.fchmod(fd, _PRIVATE)  # the umask may have taken owner-read away
                self._write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._check_read_back(tmp, record)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"cannot write {self.path}: {exc.strerror}; the previous key is intact"
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            if exc.errno in _NO_DIRECTORY_SYNC:
                return  # this filesystem cannot sync a directory; the rename is all there is
            raise StoreError(
                f"{self.path} was replaced but its directory could not be synced "
                f"({exc.strerror}); the new key may not survive a crash"
            ) from exc

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def _check_read_back(self, path: Path, record: KeyRecord) -> None:
        """Raise `StoreError` unless `path` parses, as the store reads it, into `record`."""
        try:
            back = self._read_file(path)
        except StoreError as exc:
            raise StoreError(
                f"{self.path} was not replaced: what was written does not read back ({exc}); "
                "the previous key is intact"
            ) from exc
        if back != record:
            raise StoreError(
                f"{self.path} was not replaced: what was written reads back as another "
                "record; the previous key is intact"
            )


def _checked_path(path: object) -> str:
    """`path` as a str, or a clear `TypeError`/`ValueError`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or an os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("path must be a text path (str), not bytes")
    if not text:
        raise ValueError("path must not be empty")
    return text


def _open_regular(path: Path, flags: int, *, what: str, mode: int = _PRIVATE) -> int:
    """Open `path` without blocking or following a symlink; refuse all but a regular file.

    `FileNotFoundError` passes through (for the caller to decide); any other failure is a
    `StoreError` naming `what` and the path.
    """
    try:
        fd = os.open(path, flags | _SAFE_OPEN, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{what} {path} is a symlink; refusing to use it") from exc
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a socket, or a directory opened to write
            raise StoreError(f"{what} {path} is not a regular file; refusing to use it") from exc
        raise StoreError(f"cannot open {what} {path}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{what} {path} is not a regular file; refusing to use it")
        # Back to blocking for the reads and writes of a regular file.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_some(fd: int, path: Path) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc


def _open_lock_file(path: Path) -> int:
    try:
        fd = _open_regular(path, os.O_RDWR | os.O_CREAT, what="the lock file")
    except FileNotFoundError as exc:  # the directory is missing
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(os.fstat(fd).st_mode) != _PRIVATE:
        # Created under a umask that took owner-read or -write away; not ours to fix if
        # another user made it, and flock works whatever its mode.
        with suppress(OSError):
            os.fchmod(fd, _PRIVATE)
    return fd


async def _in_thread(func: Callable[..., T], *args: object) -> T:
    """Run blocking `func` in a worker thread; if cancelled, first wait for it to finish.

    A thread cannot be stopped: a caller let go at once would release its locks (or
    close the journal) while the thread still writes, and that late write could land over
    whatever came next. So the cancellation is held back until the thread is done, then
    raised.
    """
    work = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # seen: it is the cancellation that is raised
        raise


async def _flock_polling(fd: int, path: Path, clock: Clock) -> None:
    """Take an exclusive `flock` on `fd`, waiting on `clock` without a thread.

    Cancellable any time.
    """
    delay = _POLL_FIRST
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await clock.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        except OSError as exc:
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        else:
            return
