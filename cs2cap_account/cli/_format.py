"""How the command line shows results: aligned text for people, JSON for programs.

Every `SecretKey` is shown redacted. The one exception is a key the API has just issued
and will never show again: the commands print it on purpose, once (in JSON, in a `"key"`
field, through `reissued_json(reveal=True)`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

import attrs

from cs2cap_account._models import (
    CreatedSubKey,
    KeyInfo,
    RateLimitInfo,
    ReissuedKey,
    RevokedSubKey,
    SubKeyDetail,
)
from cs2cap_account._secret import SecretKey, redact_text

__all__ = [
    "ago",
    "created_json",
    "detail_json",
    "emit_json",
    "jsonable",
    "key_info_rows",
    "print_once",
    "print_rows",
    "rate_limit_text",
    "reissued_json",
    "revoked_json",
    "sub_key_table",
]

Rows = Sequence[tuple[str, str]]


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: attrs classes as objects, datetimes in ISO 8601.

    A `SecretKey` becomes its redacted form: a plaintext key never gets here by accident.
    """
    if isinstance(value, SecretKey):
        return value.redacted
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return {
            field.name: jsonable(getattr(value, field.name)) for field in attrs.fields(type(value))
        }
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def emit_json(data: Mapping[str, Any], out: TextIO) -> None:
    """Print `data` as indented JSON."""
    print(json.dumps(jsonable(data), indent=2, ensure_ascii=False), file=out, flush=True)


def detail_json(detail: SubKeyDetail) -> dict[str, Any]:
    """A child key's metadata and usage (`key_info`, so `key` stays for plaintext only)."""
    return {"key_info": jsonable(detail.key), "requests_this_month": detail.requests_this_month}


def created_json(made: CreatedSubKey) -> dict[str, Any]:
    """A new child key: its plaintext in `key`, shown this once."""
    return {
        "key": made.key.reveal(),
        "key_redacted": made.key.redacted,
        "key_info": jsonable(made.key_info),
        "message": redact_text(made.message),
    }


def reissued_json(new: ReissuedKey, *, reveal: bool) -> dict[str, Any]:
    """A new root key: with `reveal`, its plaintext in `key`; otherwise only redacted."""
    data: dict[str, Any] = {"key": new.key.reveal()} if reveal else {}
    data.update(
        key_redacted=new.key.redacted,
        id=new.id,
        key_prefix=new.key_prefix,
        created_at=new.created_at.isoformat(),
        message=redact_text(new.message),
    )
    return data


def revoked_json(gone: RevokedSubKey) -> dict[str, Any]:
    """The answer to a child-key delete."""
    data: dict[str, Any] = jsonable(gone)
    return data


# -- text ------------------------------------------------------------------------------


def print_rows(rows: Rows, out: TextIO, *, indent: str = "  ") -> None:
    """Print label/value pairs with the values aligned."""
    width = max((len(label) for label, _ in rows), default=0)
    for label, value in rows:
        print(f"{indent}{label:<{width}}  {value}", file=out)


def print_once(kind: str, key: SecretKey, out: TextIO) -> None:
    """Print a key the API has just issued, in plaintext: it is shown once and never again."""
    print(f"The new {kind} key, shown this once (store it now):", file=out)
    print(key.reveal(), file=out, flush=True)


def ago(moment: dt.datetime, now: dt.datetime) -> str:
    """`moment` in ISO 8601 with a rough age: `2026-01-01T00:00:00+00:00 (31 days ago)`."""
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        span = "just now" if not future else "in under a minute"
        return f"{moment.isoformat()} ({span})"
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            break
    return f"{moment.isoformat()} ({'in ' + words if future else words + ' ago'})"


def _limit(value: int, unit: str, override: int | None) -> str:
    return f"{value:,} requests/{unit}" + (" (override)" if override is not None else "")


def key_info_rows(info: KeyInfo, now: dt.datetime) -> list[tuple[str, str]]:
    """The rows that describe a key's metadata (never its plaintext)."""
    rows = [
        ("id", info.id),
        ("type", "root key" if info.is_root_key else "child key"),
    ]
    if info.name is not None:
        rows.append(("name", info.name))
    if not info.is_root_key and info.root_key_id:
        rows.append(("root key", info.root_key_id))
    rows += [
        ("prefix", info.key_prefix),
        ("active", "yes" if info.is_active else "no"),
        ("created", ago(info.created_at, now)),
        ("last used", ago(info.last_used_at, now) if info.last_used_at else "never"),
        ("expires", ago(info.expires_at, now) if info.expires_at else "never"),
        (
            "rate limit",
            _limit(
                info.effective_rate_requests_per_minute,
                "minute",
                info.rate_requests_per_minute_override,
            ),
        ),
        (
            "monthly quota",
            _limit(
                info.effective_quota_requests_per_month,
                "month",
                info.quota_requests_per_month_override,
            ),
        ),
    ]
    return rows


def rate_limit_text(info: RateLimitInfo | None) -> str:
    """One line about the rate limit, from the latest response's headers."""
    if info is None:
        return "the server sent no rate-limit headers"
    parts = []
    if info.remaining is not None and info.limit is not None:
        parts.append(f"{info.remaining} of {info.limit} requests left in this minute")
    elif info.limit is not None:
        parts.append(f"limit {info.limit} requests/minute")
    if info.reset_at is not None:
        parts.append(f"window resets {info.reset_at.isoformat()}")
    if info.tier is not None:
        parts.append(f"tier {info.tier}")
    if info.retry_after is not None:
        parts.append(f"retry after {info.retry_after:g} s")
    return "; ".join(parts) or "the server sent no rate-limit headers"


def sub_key_table(details: Iterable[SubKeyDetail]) -> list[str]:
    """Child keys as an aligned table; an override is marked with `*`."""
    header = ("ID", "NAME", "RATE/MIN", "QUOTA/MONTH", "USED", "CREATED")
    rows = [header]
    overridden = False
    for detail in details:
        info = detail.key
        rate = f"{info.effective_rate_requests_per_minute:,}"
        quota = f"{info.effective_quota_requests_per_month:,}"
        if info.rate_requests_per_minute_override is not None:
            rate += "*"
            overridden = True
        if info.quota_requests_per_month_override is not None:
            quota += "*"
            overridden = True
        rows.append(
            (
                info.id,
                info.name or "-",
                rate,
                quota,
                f"{detail.requests_this_month:,}",
                info.created_at.isoformat(timespec="seconds"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if overridden:
        lines.append("* an override of the tier's default")
    return lines
