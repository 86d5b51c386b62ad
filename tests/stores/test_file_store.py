"""`FileKeyStore` on real files: permissions, symlinks, corruption, a full disk, races."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cs2cap_account import StaleGenerationError, StoreError
from cs2cap_account.stores import FileKeyStore, KeyRecord
from cs2cap_account.stores._memory import check_generation

from ._support import (
    ROOT_1,
    ROOT_2,
    ROOT_3,
    chmod,
    exists,
    full_record,
    is_symlink,
    leaked,
    make_dir,
    mode_of,
    read_bytes,
    simple_record,
    symlink,
    write_private,
)

MODULE = "cs2cap_account.stores._file"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    """Where the key file lives (not created yet)."""
    return tmp_path / "key.json"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000, so only the store's own choice of mode protects the file."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(key_path: Path) -> list[str]:
    """Files beside the key file other than itself and its lock files."""
    return sorted(
        p.name
        for p in key_path.parent.iterdir()
        if p != key_path and not p.name.startswith(key_path.name + ".")
    )


def lock_files(key_path: Path) -> list[Path]:
    """The lock files beside the key file."""
    return [p for p in key_path.parent.iterdir() if p.name.endswith("lock")]


@pytest.mark.usefixtures("permissive_umask")
async def test_the_key_file_is_0600_after_every_save(key_path: Path) -> None:
    """Created and replaced key files are mode 0600 even when the umask would allow 0666."""
    store = FileKeyStore(key_path)
    await store.save(simple_record(1), expected_generation=None)
    assert mode_of(key_path) == 0o600
    await store.save(simple_record(2, ROOT_2), expected_generation=1)
    assert mode_of(key_path) == 0o600


@pytest.mark.usefixtures("permissive_umask")
async def test_the_lock_files_are_0600(key_path: Path) -> None:
    """The lock files beside the key are private too, even under umask 000."""
    store = FileKeyStore(key_path)
    async with store.lock():
        await store.save(simple_record(1), expected_generation=None)
    found = lock_files(key_path)
    assert found
    assert {mode_of(p) for p in found} == {0o600}


async def test_the_file_holds_the_plaintext_but_repr_never_does(key_path: Path) -> None:
    """The JSON is the store, so it has the plaintext; `repr(store)` shows only the path."""
    store = FileKeyStore(key_path)
    await store.save(full_record(), expected_generation=None)

    on_disk = json.loads(read_bytes(key_path))
    assert on_disk["key"] == ROOT_2.reveal()
    assert on_disk["kept_aside"] == [ROOT_1.reveal(), ROOT_3.reveal()]
    assert str(key_path) in repr(store)
    assert leaked(repr(store)) == []


async def test_a_symlinked_key_file_is_refused(key_path: Path, tmp_path: Path) -> None:
    """Loading or saving through a symlink raises `StoreError` saying so.

    The symlink's target, a valid private key file, is left exactly as it was.
    """
    target = tmp_path / "elsewhere.json"
    await FileKeyStore(target).save(simple_record(1), expected_generation=None)
    before = read_bytes(target)
    symlink(key_path, target)
    store = FileKeyStore(key_path)

    with pytest.raises(StoreError, match="symlink") as on_load:
        await store.load()
    with pytest.raises(StoreError, match="symlink"):
        await store.save(simple_record(2, ROOT_2), expected_generation=1)

    assert str(key_path) in str(on_load.value)
    assert read_bytes(target) == before
    assert is_symlink(key_path)


async def test_a_dangling_symlink_is_not_written_through(key_path: Path, tmp_path: Path) -> None:
    """A save never creates the file a planted symlink points at (O_NOFOLLOW semantics)."""
    target = tmp_path / "planted-target"
    symlink(key_path, target)

    with pytest.raises(StoreError, match="symlink"):
        await FileKeyStore(key_path).save(simple_record(1), expected_generation=None)

    assert not exists(target)
    assert is_symlink(key_path)


async def test_a_symlinked_lock_file_is_refused(key_path: Path, tmp_path: Path) -> None:
    """The rotation lock is not taken through a symlink: `StoreError`, and no target made."""
    target = tmp_path / "planted-lock-target"
    symlink(key_path.with_name(key_path.name + ".lock"), target)

    async def take() -> None:
        async with FileKeyStore(key_path).lock():
            pass

    with pytest.raises(StoreError, match="symlink"):
        await take()
    assert not exists(target)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
async def test_a_key_file_others_can_read_is_refused(key_path: Path, mode: int) -> None:
    """A group- or world-accessible key file raises `StoreError` telling to `chmod 600`.

    Neither load nor save goes on, and the file's contents and mode stay as they were.
    """
    await FileKeyStore(key_path).save(simple_record(1), expected_generation=None)
    chmod(key_path, mode)
    before = read_bytes(key_path)
    store = FileKeyStore(key_path)

    with pytest.raises(StoreError, match="chmod 600") as on_load:
        await store.load()
    with pytest.raises(StoreError, match="chmod 600"):
        await store.save(simple_record(2, ROOT_2), expected_generation=1)

    assert f"{mode:04o}" in str(on_load.value)
    assert str(key_path) in str(on_load.value)
    assert read_bytes(key_path) == before
    assert mode_of(key_path) == mode


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        # Truncated mid-key: the error must not echo what it read.
        b'{"generation":1,"key":"' + ROOT_1.reveal().encode(),
        json.dumps({"generation": "one", "key": ROOT_1.reveal()}).encode(),
        json.dumps([ROOT_1.reveal()]).encode(),
        json.dumps({"generation": 1, "key": " " + ROOT_1.reveal(), "key_id": "k"}).encode(),
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "not-json", "truncated", "wrong-types", "array", "bad-key", "binary", "deep"],
)
async def test_a_corrupt_file_raises_store_error_naming_the_path(
    key_path: Path, content: bytes
) -> None:
    """Unparseable contents raise `StoreError` naming the file and never quoting a key.

    It says the key file is corrupt, not that a server sent a malformed response.
    """
    write_private(key_path, content)

    with pytest.raises(StoreError) as caught:
        await FileKeyStore(key_path).load()

    assert str(key_path) in str(caught.value)
    assert str(caught.value).startswith(f"the key file {key_path} is corrupt: ")
    assert "response" not in str(caught.value)
    assert leaked(str(caught.value)) == []
    assert not isinstance(caught.value, StaleGenerationError)


async def test_a_directory_in_place_of_the_file_is_refused(key_path: Path) -> None:
    """Something other than a regular file at the path raises `StoreError`, not OSError."""
    make_dir(key_path)
    with pytest.raises(StoreError) as caught:
        await FileKeyStore(key_path).load()
    assert str(key_path) in str(caught.value)


async def test_a_missing_directory_makes_save_fail_clearly(tmp_path: Path) -> None:
    """Saving into a directory that does not exist raises `StoreError` naming the path."""
    path = tmp_path / "no-such-dir" / "key.json"
    with pytest.raises(StoreError) as caught:
        await FileKeyStore(path).save(simple_record(1), expected_generation=None)
    assert str(path) in str(caught.value)


def _full_disk_write(real: Callable[[int, Any], int]) -> Callable[[int, Any], int]:
    """`os.write` on a disk that fills up: a few bytes land, then ENOSPC (regular files only)."""
    calls: list[int] = []

    def write(fd: int, data: Any) -> int:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real(fd, data)
        calls.append(fd)
        if len(calls) == 1:
            return real(fd, bytes(data[:8]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def _full_disk_fsync(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
async def test_a_full_disk_keeps_the_previous_key(
    key_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC while writing or syncing raises `StoreError` and keeps the previous key.

    The old key file is byte for byte untouched, no temporary file is left behind, and
    the store works again once space is back.
    """
    store = FileKeyStore(key_path)
    previous = simple_record(1)
    await store.save(previous, expected_generation=None)
    before = read_bytes(key_path)

    if where == "write":
        monkeypatch.setattr(f"{MODULE}.os.write", _full_disk_write(os.write))
    else:
        monkeypatch.setattr(f"{MODULE}.os.fsync", _full_disk_fsync)
    with pytest.raises(StoreError) as caught:
        await store.save(full_record(), expected_generation=1)
    monkeypatch.undo()

    assert "intact" in str(caught.value)
    assert leaked(str(caught.value)) == []
    assert not isinstance(caught.value, StaleGenerationError)
    assert read_bytes(key_path) == before
    assert await FileKeyStore(key_path).load() == previous
    assert leftovers(key_path) == []

    await store.save(simple_record(2, ROOT_2), expected_generation=1)
    assert await FileKeyStore(key_path).load() == simple_record(2, ROOT_2)


async def test_a_failed_rename_keeps_the_previous_key(
    key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the atomic rename fails the old file stays and the temporary file is removed."""
    store = FileKeyStore(key_path)
    await store.save(simple_record(1), expected_generation=None)
    before = read_bytes(key_path)

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(f"{MODULE}.os.replace", failing_replace)
    with pytest.raises(StoreError):
        await store.save(simple_record(2, ROOT_2), expected_generation=1)
    monkeypatch.undo()

    assert read_bytes(key_path) == before
    assert leftovers(key_path) == []


def _directory_fsync_failing_with(code: int) -> Callable[[int], None]:
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        real(fd)

    return fsync


async def test_a_failed_directory_sync_is_a_store_error(
    key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the directory cannot be fsynced the save is not durable: `StoreError`, not OSError."""
    store = FileKeyStore(key_path)
    await store.save(simple_record(1), expected_generation=None)

    monkeypatch.setattr(f"{MODULE}.os.fsync", _directory_fsync_failing_with(errno.EIO))
    with pytest.raises(StoreError) as caught:
        await store.save(simple_record(2, ROOT_2), expected_generation=1)
    monkeypatch.undo()

    assert "director" in str(caught.value)
    assert leaked(str(caught.value)) == []


async def test_a_filesystem_that_cannot_sync_directories_still_saves(
    key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EINVAL from a directory fsync means the filesystem does not support it: not an error."""
    monkeypatch.setattr(f"{MODULE}.os.fsync", _directory_fsync_failing_with(errno.EINVAL))
    await FileKeyStore(key_path).save(simple_record(1), expected_generation=None)
    monkeypatch.undo()
    assert await FileKeyStore(key_path).load() == simple_record(1)


async def test_a_save_racing_another_cannot_both_pass_the_check(
    key_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two saves from one generation: the second cannot slip in after the first's check.

    The first save is paused just after its generation check. The second, from another
    handle, gets a window to run; without mutual exclusion it would pass the same check
    and both would "win". Exactly one save must win, and the file holds the winner.
    """
    await FileKeyStore(key_path).save(simple_record(1), expected_generation=None)
    first_checked = threading.Event()
    release_first = threading.Event()
    checks: list[str] = []

    def paused_check(stored: KeyRecord | None, expected: int | None, *, where: str) -> None:
        check_generation(stored, expected, where=where)
        checks.append(where)
        if len(checks) == 1:
            first_checked.set()
            release_first.wait(10)

    monkeypatch.setattr(f"{MODULE}.check_generation", paused_check)
    first = asyncio.create_task(
        FileKeyStore(key_path).save(simple_record(2, ROOT_2), expected_generation=1)
    )
    assert await asyncio.to_thread(first_checked.wait, 10)
    second = asyncio.create_task(
        FileKeyStore(key_path).save(simple_record(2, ROOT_3), expected_generation=1)
    )
    await asyncio.wait([second], timeout=0.3)
    release_first.set()
    results = await asyncio.wait_for(
        asyncio.gather(first, second, return_exceptions=True), timeout=10
    )

    assert results[0] is None
    assert isinstance(results[1], StaleGenerationError)
    assert await FileKeyStore(key_path).load() == simple_record(2, ROOT_2)
