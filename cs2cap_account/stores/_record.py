"""What a key store holds: one `KeyRecord`, rewritten whole on every change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import attrs

from cs2cap_account._converter import converter, structure
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import MalformedResponseError, StoreError

__all__ = [
    "ChildSpec",
    "KeyRecord",
    "PendingRotation",
    "StoredSubKey",
    "dump_record",
    "load_record",
]


@attrs.frozen
class ChildSpec:
    """A child key to re-create after a rotation: its name and overrides."""

    name: str
    quota_requests_per_month_override: int | None = None
    rate_requests_per_minute_override: int | None = None


@attrs.frozen
class StoredSubKey:
    """A re-created child key, as saved: its plaintext and id."""

    key: SecretKey
    id: str


@attrs.frozen
class PendingRotation:
    """The journal of a rotation in progress, written before the reissue.

    `from_generation` is the generation being rotated away from. While the record's
    generation still equals it, the reissue has not been saved; once it is one more, the
    new key is saved and the rest of the rotation (verify, children, callbacks) is owed.
    """

    from_generation: int
    previous_key_id: str
    reason: str
    started_at: dt.datetime
    children: tuple[ChildSpec, ...] = ()


@attrs.frozen
class KeyRecord:
    """The store's whole state: the current key, its generation, and the journal.

    `generation` goes up by one with every saved rotation; every write is a
    compare-and-set on it, so a writer working from an old generation is fenced off.
    `kept_aside` holds keys that were reissued but could not be stored as current
    (fenced): they may be the only live key, so they are never discarded.
    """

    generation: int
    key: SecretKey
    key_id: str
    saved_at: dt.datetime
    pending: PendingRotation | None = None
    sub_keys: Mapping[str, StoredSubKey] = attrs.field(factory=dict)
    kept_aside: tuple[SecretKey, ...] = ()


def dump_record(record: KeyRecord) -> bytes:
    """Serialise a record to JSON bytes (plaintext keys included: protect the bytes)."""
    return json.dumps(converter.unstructure(record), separators=(",", ":")).encode()


def load_record(data: bytes | str, *, source: str) -> KeyRecord:
    """Parse JSON bytes written by `dump_record`, or raise `StoreError` naming `source`."""
    try:
        raw: Any = json.loads(data)
        return structure(raw, KeyRecord)
    except (ValueError, RecursionError, MalformedResponseError) as exc:
        # RecursionError: deeply nested JSON, which is as corrupt as any other.
        raise StoreError(f"{source} does not hold a valid key record: {exc}") from exc
