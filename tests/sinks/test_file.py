"""`FileSink`: formats, atomic replacement, mode 0600, and the refusals of the file store."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationEvent, SecretKey
from cs2cap_account.sinks import FileSink, SinkError
from cs2cap_account.testing import FakeCS2CapAPI


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("file_format", ["raw", "env", "json"])
async def test_each_new_key_lands_in_the_file_in_its_format(
    fake: FakeCS2CapAPI, fake_client: AccountClient, tmp_path: Path, file_format: str
) -> None:
    """The file holds the rotated key, in the chosen format, owner read/write only."""
    path = tmp_path / "key"
    rotator = KeyRotator(
        fake_client,
        store=MemoryKeyStore(),
        sinks=[FileSink(path, format=file_format)],  # type: ignore[arg-type]
    )
    old = os.umask(0o022)
    try:
        event = await rotator.rotate_now()
    finally:
        os.umask(old)
    text = path.read_text()
    key = event.new_key.reveal()
    if file_format == "raw":
        assert text == key
    elif file_format == "env":
        assert text == f"CS2C_API_KEY={key}\n"
    else:
        assert json.loads(text) == {
            "api_key": key,
            "key_id": event.key_id,
            "generation": event.generation,
        }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fake.is_active(event.new_key)
    assert _names(tmp_path) == ["key"], "no temporary file left"


async def test_a_second_rotation_replaces_the_file(
    fake_client: AccountClient, tmp_path: Path
) -> None:
    """A later key replaces the earlier one (by rename: a new inode)."""
    path = tmp_path / "key"
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[FileSink(path)])
    await rotator.rotate_now()
    first_inode = path.stat().st_ino
    second = await rotator.rotate_now()
    assert path.read_text() == second.new_key.reveal()
    assert path.stat().st_ino != first_inode


async def test_a_symlink_at_the_path_is_refused_and_its_target_untouched(
    fake_client: AccountClient, tmp_path: Path
) -> None:
    """The sink never writes through a symlink: the rotation stands, the sink fails."""
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    link = tmp_path / "key"
    link.symlink_to(target)
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[FileSink(link)])
    event = await rotator.rotate_now()
    assert [f.sink for f in event.sink_errors] == [f"file:{link}"]
    assert "symlink" in str(event.sink_errors[0].error)
    assert target.read_text() == "untouched"
    assert link.is_symlink()


def _event(key: str = "sk_live_file_sink_test_key_0123456789") -> RotationEvent:
    return RotationEvent(
        new_key=SecretKey(key),
        key_id="key_1",
        previous_key_id=None,
        generation=1,
        rotated_at=dt.datetime.now(dt.timezone.utc),
        reason="manual",
    )


@pytest.mark.parametrize("kind", ["directory", "fifo"])
async def test_anything_but_a_regular_file_at_the_path_is_refused(
    tmp_path: Path, kind: str
) -> None:
    """A directory or a FIFO at the path is refused with SinkError, never opened."""
    path = tmp_path / "key"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    with pytest.raises(SinkError, match="not a regular file"):
        await FileSink(path).publish(_event())


async def test_a_failed_write_is_a_sink_error_without_the_key(tmp_path: Path) -> None:
    """A directory that is not there: SinkError naming the file, never the key."""
    event = _event()
    with pytest.raises(SinkError, match="cannot write the key file") as caught:
        await FileSink(tmp_path / "missing" / "key").publish(event)
    assert event.new_key.reveal() not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((42,), {}, TypeError),
        (("",), {}, ValueError),
        (("key",), {"format": "yaml"}, ValueError),
    ],
)
def test_arguments_are_checked(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    """A wrong path or format is refused at construction."""
    with pytest.raises(error):
        FileSink(*args, **kwargs)  # type: ignore[arg-type]
