"""`FileSink`: the key in a file, replaced atomically, mode 0600, never through a symlink."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Final, Literal

from cs2cap_account._constants import API_KEY_ENV
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.sinks._protocol import SinkError
from cs2cap_account.stores._file import (
    _NO_DIRECTORY_SYNC,
    _PRIVATE,
    _SAFE_OPEN,
    _checked_path,
    _in_thread,
)

__all__ = ["FileFormat", "FileSink", "render"]

FileFormat = Literal["raw", "env", "json"]
FORMATS: Final = ("raw", "env", "json")


def render(event: RotationEvent, file_format: FileFormat) -> bytes:
    """The file's content for `event` (pure): the key alone, a dotenv line, or JSON."""
    key = event.new_key.reveal()
    if file_format == "raw":
        return key.encode()
    if file_format == "env":
        return f"{API_KEY_ENV}={key}\n".encode()
    document = {"api_key": key, "key_id": event.key_id, "generation": event.generation}
    return (json.dumps(document, indent=2) + "\n").encode()


class FileSink:
    """Writes each new key to `path`, for a consumer that reads a file.

    `format`: `"raw"` (the key alone, no newline), `"env"` (`CS2C_API_KEY=...`, for
    `--env-file` and systemd's `EnvironmentFile=`) or `"json"` (`api_key`, `key_id`,
    `generation`). The file store's hardening: the new content is written beside the
    file, created 0600 whatever the umask, fsynced and renamed over it, then the
    directory is fsynced, so a reader sees the old key or the new one, never half of
    either. A symlink (or anything but a regular file) at `path` is refused.
    """

    def __init__(self, path: str | os.PathLike[str], *, format: FileFormat = "raw") -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        self.path = Path(_checked_path(path))
        self.format: FileFormat = format
        self.name = f"file:{self.path}"

    def __repr__(self) -> str:
        return f"FileSink({str(self.path)!r}, format={self.format!r})"

    async def publish(self, event: RotationEvent) -> None:
        """Replace the file with `event`'s key; `SinkError` (the old file intact) if not."""
        await _in_thread(self._replace, render(event, self.format))

    def _replace(self, data: bytes) -> None:
        self._refuse_odd_target()
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE_OPEN, _PRIVATE)
            try:
                os.set_blocking(fd, True)
                os.fchmod(fd, _PRIVATE)  # the umask may have taken owner-read away
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SinkError(
                f"cannot write the key file {self.path}: {exc.strerror}; "
                "the previous file is intact"
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
            if exc.errno not in _NO_DIRECTORY_SYNC:
                raise SinkError(
                    f"{self.path} was replaced but its directory could not be synced "
                    f"({exc.strerror}); the new key may not survive a crash"
                ) from exc

    def _refuse_odd_target(self) -> None:
        """A symlink, FIFO, directory or device at `path` is refused, not replaced."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SinkError(f"cannot look at the key file {self.path}: {exc.strerror}") from exc
        if stat.S_ISLNK(mode):
            raise SinkError(f"the key file {self.path} is a symlink; refusing to write through it")
        if not stat.S_ISREG(mode):
            raise SinkError(f"the key file {self.path} is not a regular file; refusing to use it")
