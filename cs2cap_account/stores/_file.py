"""`FileKeyStore`: a JSON file that several processes on one host share safely."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

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

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cipher: CipherKey | RecordCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self._clock: Clock = clock or SystemClock()
        self._where = f"the key file {self.path}"
        self._cipher = make_cipher(cipher)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._save_lock_path = self.path.with_name(self.path.name + ".save.lock")
        self._local = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileKeyStore({str(self.path)!r})"

    async def load(self) -> KeyRecord | None:
        """Read and parse the file; None if it does not exist yet."""
        return await asyncio.to_thread(self._read)

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Compare-and-set on the generation, then replace the file atomically."""
        await asyncio.to_thread(self._save, record, expected_generation)

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
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(
                    f"{self.path} is a symlink; refusing to read a key through it"
                ) from exc
            raise StoreError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"{self.path} is not a regular file")
            if info.st_mode & 0o077:
                raise StoreError(
                    f"{self.path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"refusing to use it: run `chmod 600 {self.path}`"
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read()
        finally:
            os.close(fd)
        data = open_record_bytes(self._cipher, data, source=self._where)
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
            self._replace(data)
        finally:
            os.close(fd)

    def _replace(self, data: bytes) -> None:
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(
                f"cannot write {self.path}: {exc.strerror}; the previous key is intact"
            ) from exc
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


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(
                f"the lock file {path} is a symlink; refusing to lock through it"
            ) from exc
        raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from exc


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
