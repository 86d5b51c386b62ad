"""Records, keys and small helpers shared by the fleet tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable

from cs2cap_account import KeyRecord, SecretKey
from cs2cap_account.stores import PendingRotation, StoredSubKey

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)

# Plaintexts that look like real keys, so a leak is easy to spot in any text.
ROOT_1 = SecretKey("sk_live_root_" + "1" * 24 + "AAAA")
ROOT_2 = SecretKey("sk_live_root_" + "2" * 24 + "BBBB")
ROOT_3 = SecretKey("sk_live_root_" + "3" * 24 + "CCCC")
CHILD = SecretKey("sk_live_child_" + "4" * 24 + "DDDD")
SECRETS = (ROOT_1, ROOT_2, ROOT_3, CHILD)


def record(generation: int = 1, key: SecretKey = ROOT_1) -> KeyRecord:
    """A record holding `key` at `generation`."""
    return KeyRecord(
        generation=generation,
        key=key,
        key_id=f"key_{generation}",
        saved_at=T0 + dt.timedelta(minutes=generation),
    )


def full_record() -> KeyRecord:
    """A record using every field: a journal, a child key, keys kept aside."""
    return KeyRecord(
        generation=7,
        key=ROOT_2,
        key_id="key_7",
        saved_at=T0,
        pending=PendingRotation(
            from_generation=6, previous_key_id="key_6", reason="max_age", started_at=T0
        ),
        sub_keys={"bot": StoredSubKey(key=CHILD, id="child_1")},
        kept_aside=(ROOT_1, ROOT_3),
    )


def sha256(key: SecretKey) -> str:
    """The hex SHA-256 of a key's plaintext: comparable without showing the key."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()


def leaked(text: str, *keys: SecretKey) -> list[str]:
    """The keys (the test secrets, and `keys`) whose plaintext appears in `text`, redacted."""
    return [str(k) for k in (*SECRETS, *keys) if k.reveal() in text]


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, bound: float = 5.0, every: float = 0.01
) -> float:
    """Poll `condition` every `every` seconds until true; the seconds it took.

    Fails the test if it is still false after `bound` seconds.
    """
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > bound:
            raise AssertionError(f"condition still false after {bound} s")
        await asyncio.sleep(every)
    return time.monotonic() - started
