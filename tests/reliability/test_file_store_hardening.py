"""`FileKeyStore` hardening that `tests/stores/test_file_store.py` does not already cover.

Covered there, not repeated here: a symlinked key file or rotation lock file is refused,
a dangling symlink is not written through, a group- or world-readable key file is
refused with a `chmod 600` hint, and ENOSPC on write or fsync of one save keeps the
previous file. Added here: symlinks planted where the store *creates* files (its
temporary file, its save lock), and a disk that fills up in the middle of a rotation.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cs2cap_account import (
    AccountClient,
    FileKeyStore,
    KeyRecord,
    KeyRotator,
    RotationError,
    StoreError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

MODULE = "cs2cap_account.stores._file"
FIXED_TOKEN = "0123456789ab"  # what the store's random temp-file suffix is made to be
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    """Where the key file lives."""
    return tmp_path / "key.json"


def _record(api: FakeCS2CapAPI, generation: int = 1) -> KeyRecord:
    return KeyRecord(generation=generation, key=api.root_key, key_id=api.root_key_id, saved_at=T0)


def _strays(directory: Path, key_path: Path) -> list[str]:
    """Files in `directory` other than the key file and its lock files."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if p != key_path and not p.name.startswith(key_path.name + ".")
    )


# Blocking file helpers: the files are tiny and local, called between awaits.


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _exists(path: Path) -> bool:
    return path.exists()


def _is_symlink(path: Path) -> bool:
    return path.is_symlink()


def _symlink(link: Path, target: Path) -> None:
    link.symlink_to(target)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_a_symlink_planted_at_the_temp_file_path_is_not_followed(
    key_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeCS2CapAPI
) -> None:
    """Someone who guesses the temporary file's name and plants a symlink there does not
    get the key written through it (O_CREAT|O_EXCL|O_NOFOLLOW): the save fails with
    `StoreError`, the symlink's target is untouched, and the previous key stays.
    """
    store = FileKeyStore(key_path)
    await store.save(_record(api), expected_generation=None)
    before = _bytes(key_path)
    target = tmp_path / "attacker-owned"
    _write(target, b"untouched")
    planted = tmp_path / f".{key_path.name}.{FIXED_TOKEN}.tmp"
    _symlink(planted, target)
    monkeypatch.setattr(f"{MODULE}.secrets.token_hex", lambda _n: FIXED_TOKEN)

    with pytest.raises(StoreError, match="intact"):
        await store.save(_record(api, 2), expected_generation=1)

    assert _bytes(target) == b"untouched"
    assert _bytes(key_path) == before
    assert not _is_symlink(key_path)
    assert await FileKeyStore(key_path).load() == _record(api)


async def test_a_symlink_planted_at_a_dangling_temp_path_creates_nothing(
    key_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeCS2CapAPI
) -> None:
    """A planted symlink to a file that does not exist yet: it is not created."""
    target = tmp_path / "would-be-created"
    _symlink(tmp_path / f".{key_path.name}.{FIXED_TOKEN}.tmp", target)
    monkeypatch.setattr(f"{MODULE}.secrets.token_hex", lambda _n: FIXED_TOKEN)

    with pytest.raises(StoreError):
        await FileKeyStore(key_path).save(_record(api), expected_generation=None)

    assert not _exists(target)
    assert not _exists(key_path)


async def test_a_symlinked_save_lock_is_refused(
    key_path: Path, tmp_path: Path, api: FakeCS2CapAPI
) -> None:
    """The lock each save takes is not opened through a symlink either."""
    target = tmp_path / "planted-save-lock-target"
    _symlink(key_path.with_name(key_path.name + ".save.lock"), target)

    with pytest.raises(StoreError, match="symlink"):
        await FileKeyStore(key_path).save(_record(api), expected_generation=None)

    assert not _exists(target)
    assert not _exists(key_path)


# --- a disk that fills up during a rotation ----------------------------------------------


def _full_disk(
    real: Callable[[int, Any], int], when: Callable[[], bool]
) -> Callable[[int, Any], int]:
    """`os.write` that fails with ENOSPC on the store's temporary files while `when()`."""

    def write(fd: int, data: Any) -> int:
        if when() and stat.S_ISREG(os.fstat(fd).st_mode) and _is_temp_file(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    return write


def _is_temp_file(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp")
    except OSError:  # no /proc: any regular file
        return True


async def test_a_full_disk_before_the_reissue_stops_the_rotation_key_intact(
    key_path: Path, api: FakeCS2CapAPI, client: AccountClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal cannot be written: the rotation stops before anything is revoked.
    The file is byte for byte what it was, and its key still works.
    """
    store = FileKeyStore(key_path)
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    await rotator.check()
    before = _bytes(key_path)
    monkeypatch.setattr(f"{MODULE}.os.write", _full_disk(os.write, lambda: True))

    with pytest.raises(RotationError, match="nothing was reissued"):
        await rotator.rotate_now()
    monkeypatch.undo()

    assert api.reissues == 0
    assert _bytes(key_path) == before
    stored = await FileKeyStore(key_path).load()
    assert stored is not None
    assert api.is_active(stored.key)
    assert _strays(key_path.parent, key_path) == []


async def test_a_full_disk_after_the_reissue_keeps_the_file_and_saves_the_key_later(
    key_path: Path, api: FakeCS2CapAPI, client: AccountClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up between the reissue and the save of its key: the rotation fails
    with a RotationError saying so; the file still holds the previous record (and its
    open journal) intact, no temporary file is left, and this process goes on with the
    new key. When space is back, the next check saves it: one reissue in all.
    """
    store = FileKeyStore(key_path)
    rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
    await rotator.check()
    full = [False]

    async def fill_the_disk(step: Step) -> None:
        if step is Step.REISSUED:
            full[0] = True

    after_step(rotator, fill_the_disk)
    monkeypatch.setattr(f"{MODULE}.os.write", _full_disk(os.write, lambda: full[0]))

    with pytest.raises(RotationError, match="could not be saved"):
        await rotator.rotate_now()

    on_disk = await FileKeyStore(key_path).load()
    assert on_disk is not None
    assert on_disk.generation == 1
    assert on_disk.pending is not None  # the journal written before the reissue
    assert not api.is_active(on_disk.key)  # revoked by the reissue, as it must be
    assert client.api_key == api.root_key  # this process holds the new key
    assert _strays(key_path.parent, key_path) == []

    full[0] = False
    monkeypatch.undo()
    await rotator.check()

    saved = await FileKeyStore(key_path).load()
    assert saved is not None
    assert (saved.generation, saved.pending, saved.key) == (2, None, api.root_key)
    assert api.reissues == 1
    assert _mode(key_path) == 0o600
