"""What a key store holds: one `KeyRecord`, rewritten whole on every change."""

from __future__ import annotations

import datetime as dt
import json
import secrets
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
    "new_lineage",
    "successor",
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
    lineage: str = ""
    """A random id written when the store is initialised, carried by every successor.

    Another lineage (or an empty store) means the store was reset since. Records written
    before lineages existed read as lineage "" and keep it.
    """


def new_lineage() -> str:
    """A fresh, random store lineage."""
    return secrets.token_hex(8)


def successor(
    record: KeyRecord | None,
    key: SecretKey,
    key_id: str,
    *,
    at: dt.datetime,
    lineage: str | None = None,
) -> KeyRecord:
    """The record that follows `record` once `key` (with id `key_id`) replaced its key.

    One generation on, in `record`'s lineage; for an empty store, generation 1 of
    `lineage` (a new random one if not given). Saved `at`. The journal and the kept-aside
    keys carry over (less `key` itself, if it was one), so an open rotation is still
    finished and no live key is forgotten; the child keys do not, since the reissue that
    made `key` revoked them.
    """
    if record is None:
        fresh = new_lineage() if lineage is None else lineage
        return KeyRecord(generation=1, key=key, key_id=key_id, saved_at=at, lineage=fresh)
    return KeyRecord(
        generation=record.generation + 1,
        key=key,
        key_id=key_id,
        saved_at=at,
        pending=record.pending,
        kept_aside=tuple(kept for kept in record.kept_aside if kept != key),
        lineage=record.lineage,
    )


def dump_record(record: KeyRecord) -> bytes:
    """Serialise a record to JSON bytes (plaintext keys included: protect the bytes)."""
    return json.dumps(converter.unstructure(record), separators=(",", ":")).encode()


def load_record(data: bytes | str, *, source: str) -> KeyRecord:
    """Parse JSON bytes written by `dump_record`, or raise `StoreError` naming `source`.

    `source` names the place, as in "the key file /var/lib/key.json": the error reads
    "<source> is corrupt: <what is wrong>".
    """
    try:
        raw: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # RecursionError: deeply nested JSON, which is as corrupt as any other.
        what = "nested too deeply" if isinstance(exc, RecursionError) else f"not JSON ({exc})"
        raise StoreError(f"{source} is corrupt: {what}") from exc
    try:
        return structure(raw, KeyRecord)
    except (MalformedResponseError, RecursionError) as exc:
        raise StoreError(f"{source} is corrupt: {_problem(exc)}") from exc


def _problem(exc: BaseException) -> str:
    """What is wrong with a record, without the parser's "malformed ... response" prefix."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    prefix = f"malformed {KeyRecord.__name__} response: "
    return text.removeprefix(prefix) or "not a key record"
