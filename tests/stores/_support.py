"""Records and keys for the key-store tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

from cs2cap_account._secret import SecretKey
from cs2cap_account.stores import ChildSpec, KeyRecord, PendingRotation, StoredSubKey

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)

# Plaintexts that look like real keys, so a leak is easy to spot in any text.
ROOT_1 = SecretKey("sk_live_root_" + "1" * 24 + "AAAA")
ROOT_2 = SecretKey("sk_live_root_" + "2" * 24 + "BBBB")
ROOT_3 = SecretKey("sk_live_root_" + "3" * 24 + "CCCC")
CHILD = SecretKey("sk_live_child_" + "4" * 24 + "DDDD")
ALL_SECRETS = (ROOT_1, ROOT_2, ROOT_3, CHILD)


def simple_record(generation: int = 1, key: SecretKey = ROOT_1) -> KeyRecord:
    """A record with only the current key, at `generation`."""
    return KeyRecord(
        generation=generation,
        key=key,
        key_id=f"key_{generation}",
        saved_at=T0 + dt.timedelta(minutes=generation),
    )


def full_record() -> KeyRecord:
    """A record using every field: an open journal with children, sub-keys, kept-aside keys."""
    return KeyRecord(
        generation=7,
        key=ROOT_2,
        key_id="key_7",
        saved_at=T0,
        pending=PendingRotation(
            from_generation=6,
            previous_key_id="key_6",
            reason="max_age",
            # A non-UTC offset must come back as the same instant and offset.
            started_at=T0.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))),
            children=(
                ChildSpec("bot", quota_requests_per_month_override=1000),
                ChildSpec("dashboard", rate_requests_per_minute_override=60),
                ChildSpec("plain"),
            ),
        ),
        sub_keys={"bot": StoredSubKey(key=CHILD, id="child_1")},
        kept_aside=(ROOT_1, ROOT_3),
    )


def sha256(key: SecretKey) -> str:
    """The hex SHA-256 of a key's plaintext: comparable without showing the key."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()


def leaked(text: str) -> list[str]:
    """The test secrets whose plaintext appears in `text` (shown redacted)."""
    return [str(secret) for secret in ALL_SECRETS if secret.reveal() in text]


# Blocking file helpers: tests call these between awaits (the files are tiny and local).


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`."""
    return path.read_bytes()


def write_private(path: Path, data: bytes) -> None:
    """Create `path` (mode 0600) holding exactly `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def symlink(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target`."""
    link.symlink_to(target)


def is_symlink(path: Path) -> bool:
    """Whether `path` is a symlink."""
    return path.is_symlink()


def exists(path: Path) -> bool:
    """Whether `path` exists (following symlinks)."""
    return path.exists()


def chmod(path: Path, mode: int) -> None:
    """Set the permission bits of `path`."""
    path.chmod(mode)


def mode_of(path: Path) -> int:
    """The permission bits of `path` (not following a symlink)."""
    return stat.S_IMODE(path.lstat().st_mode)


def make_dir(path: Path) -> None:
    """Create the directory `path`, private."""
    path.mkdir(mode=0o700)


def touch(path: Path) -> None:
    """Create `path`, empty."""
    path.touch()
