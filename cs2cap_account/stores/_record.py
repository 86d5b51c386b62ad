"""What a key store holds: one `KeyRecord`, rewritten whole on every change."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping
from typing import Any

import attrs

from cs2cap_account._converter import converter, structure
from cs2cap_account._models import KeyInfo
from cs2cap_account._secret import SecretKey, redact_text
from cs2cap_account.errors import MalformedResponseError, StoreError

__all__ = [
    "ChildSpec",
    "KeyRecord",
    "PendingChildRotation",
    "PendingRotation",
    "RecordBytes",
    "StoredSubKey",
    "dump_record",
    "load_record",
    "new_lineage",
    "successor",
]


@attrs.frozen
class ChildSpec:
    """A child key to re-create after a rotation: its name and overrides.

    `generation` is that of the stored child it replaces (0 if none was stored), so the
    re-created child's generation carries on from it.
    """

    name: str
    quota_requests_per_month_override: int | None = None
    rate_requests_per_minute_override: int | None = None
    generation: int = 0


@attrs.frozen
class StoredSubKey:
    """A re-created child key, as saved: its plaintext and id, and its metadata.

    `info` is the key's metadata as the server answered its creation, so that a process
    adopting the record can announce the child without asking the server (None in
    records written before it was kept).
    """

    key: SecretKey
    id: str
    info: KeyInfo | None = None
    generation: int = 1
    """How many keys this child has had in the store: one more with each rotation of it,
    on its own schedule or after a root rotation re-created it."""


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
class PendingChildRotation:
    """The journal of one child key's rotation, written before its reissue.

    While the child stored under its name is still `previous_key_id` (or none is
    stored), the reissue has not been saved: whether it happened is for the old child to
    tell (still active: no). Once another child is stored under the name, the new key
    is saved, and its verification and announcement are owed.
    """

    previous_key_id: str
    previous_created_at: dt.datetime
    reason: str
    started_at: dt.datetime
    generation: int = 0
    """The generation of the child stored under the name when the rotation began (0 if
    none was): the new child's is one more."""


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
    key_info: KeyInfo | None = None
    """The stored key's metadata (`created_at`, `expires_at`, ...) as the server last
    described it, so that the fleet's schedule needs no request per process."""
    checked_at: dt.datetime | None = None
    """When a process last asked the server about the stored key (`key_info`): one
    process per fleet does so each check interval."""
    child_rotations: Mapping[str, PendingChildRotation] = attrs.field(factory=dict)
    """The journals of child-key rotations in progress, by child name (see
    `PendingChildRotation`). A root rotation drops them: its reissue revokes every child."""


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
    finished and no live key is forgotten; the child keys and their journals do not,
    since the reissue that made `key` revoked them.
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


class RecordBytes(bytes):
    """A serialised record (plaintext keys inside) that shows only its length.

    What stores write is kept in these, so a traceback's captured locals (`data`,
    `payload`) in a store's frames, or in the OS call that failed, never show a key.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of a key record>"

    __str__ = __repr__


def dump_record(record: KeyRecord) -> RecordBytes:
    """Serialise a record to JSON bytes (plaintext keys included: protect the bytes).

    What is returned is proved to read back, through `load_record`, as a record equal to
    `record`: a field of the wrong type (`reason=None`, an integer id, a naive datetime,
    NaN) raises `StoreError` here, before a store writes anything, so nothing written can
    leave a store unreadable. `TypeError` if `record` is not a `KeyRecord` at all.
    """
    if not isinstance(record, KeyRecord):
        raise TypeError(f"a key store holds a KeyRecord, not {type(record).__name__}")
    try:
        data = RecordBytes(
            json.dumps(
                converter.unstructure(record), separators=(",", ":"), allow_nan=False
            ).encode()
        )
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        # The messages name types and values' kinds only, never a field's value.
        detail = redact_text(str(exc)) or type(exc).__name__
        raise StoreError(
            f"refusing to write a key record that cannot be stored: {detail}"
        ) from None
    problem = _read_back_problem(data, record)
    if problem is not None:
        del data  # holds plaintext keys: keep it out of the traceback's locals
        raise StoreError(f"refusing to write a key record that would not read back: {problem}")
    return data


def _read_back_problem(data: bytes, record: KeyRecord) -> str | None:
    """Why `data` does not parse back into `record`, or None if it does."""
    try:
        back = structure(json.loads(data), KeyRecord)
    except (MalformedResponseError, RecursionError) as exc:
        return _problem(exc)
    if back != record:
        return "a field does not survive the round trip (a naive datetime, or the wrong type?)"
    return None


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
