"""Request validation with FastAPI/Pydantic-style 422 details.

Each parser collects every problem it finds (as FastAPI does) and raises one
`422 VALIDATION_ERROR` listing them all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cs2cap_account.testing._errors import FieldIssue, validation_error
from cs2cap_account.testing._state import UNSET, ChildChanges, ChildSettings, TierLimits, Unset

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "parse_child_changes",
    "parse_child_settings",
    "parse_key_id",
    "parse_page",
]

DEFAULT_PAGE_SIZE: Final = 25
MAX_PAGE_SIZE: Final = 100
_NAME_MAX: Final = 100
_QUOTA_FIELD: Final = "quota_requests_per_month_override"
_RATE_FIELD: Final = "rate_requests_per_minute_override"


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    """Return `(limit, offset)`; limit is clamped to 1..100 (default 25), offset must be ≥ 0."""
    issues: list[FieldIssue] = []
    limit = _query_int(query, "limit", DEFAULT_PAGE_SIZE, issues)
    offset = _query_int(query, "offset", 0, issues)
    if offset < 0:
        issues.append(_too_small(("query", "offset"), offset, 0))
    if issues:
        raise validation_error(issues)
    return min(max(limit, 1), MAX_PAGE_SIZE), offset


def parse_key_id(raw: str) -> str:
    """Return the path's `key_id` in canonical form, or raise 422 if it is not a UUID."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        issue = FieldIssue("uuid_parsing", ("path", "key_id"), "Input should be a valid UUID", raw)
        raise validation_error([issue]) from None


def parse_child_settings(raw: bytes, tier: TierLimits) -> ChildSettings:
    """Validate a `POST /account/sub-keys` body."""
    body = _json_object(raw)
    issues: list[FieldIssue] = []
    name: str | None = None
    if "name" in body:
        name = _valid_name(body["name"], issues)
    else:
        issues.append(FieldIssue("missing", ("body", "name"), "Field required", body))
    quota = _override(body, _QUOTA_FIELD, tier.requests_per_month, issues)
    rate = _override(body, _RATE_FIELD, tier.requests_per_minute, issues)
    if issues or name is None:
        raise validation_error(issues)
    return ChildSettings(
        name,
        None if isinstance(quota, Unset) else quota,
        None if isinstance(rate, Unset) else rate,
    )


def parse_child_changes(raw: bytes, tier: TierLimits) -> ChildChanges:
    """Validate a `PATCH /account/sub-keys/{key_id}` body; omitted fields stay `UNSET`.

    A `null` name leaves the name alone; a `null` override removes the override.
    """
    body = _json_object(raw)
    issues: list[FieldIssue] = []
    name = None if body.get("name") is None else _valid_name(body["name"], issues)
    quota = _override(body, _QUOTA_FIELD, tier.requests_per_month, issues)
    rate = _override(body, _RATE_FIELD, tier.requests_per_minute, issues)
    if issues:
        raise validation_error(issues)
    return ChildChanges(UNSET if name is None else name, quota, rate)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise validation_error([FieldIssue("missing", ("body",), "Field required")])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        issue = FieldIssue(
            "json_invalid", ("body", position), "JSON decode error", {}, {"error": str(exc)}
        )
        raise validation_error([issue]) from None
    if not isinstance(body, dict):
        issue = FieldIssue(
            "model_attributes_type",
            ("body",),
            "Input should be a valid dictionary or object to extract fields from",
            body,
        )
        raise validation_error([issue])
    return body


def _valid_name(name: object, issues: list[FieldIssue]) -> str | None:
    """Return `name` if it is a valid key name; otherwise record why and return None."""
    loc = ("body", "name")
    if not isinstance(name, str):
        issues.append(FieldIssue("string_type", loc, "Input should be a valid string", name))
    elif len(name) < 1:
        issues.append(
            FieldIssue(
                "string_too_short",
                loc,
                "String should have at least 1 character",
                name,
                {"min_length": 1},
            )
        )
    elif len(name) > _NAME_MAX:
        issues.append(
            FieldIssue(
                "string_too_long",
                loc,
                f"String should have at most {_NAME_MAX} characters",
                name,
                {"max_length": _NAME_MAX},
            )
        )
    else:
        return name
    return None


def _override(
    body: Mapping[str, Any], field: str, ceiling: int, issues: list[FieldIssue]
) -> int | Unset | None:
    """Read an optional override: an int in 1..ceiling, or null; UNSET when absent."""
    value = body.get(field, UNSET)
    if value is None or isinstance(value, Unset):
        return value
    loc = ("body", field)
    if isinstance(value, bool) or not isinstance(value, int):
        issues.append(FieldIssue("int_type", loc, "Input should be a valid integer", value))
    elif value < 1:
        issues.append(_too_small(loc, value, 1))
    elif value > ceiling:
        issues.append(
            FieldIssue(
                "less_than_equal",
                loc,
                f"Input should be less than or equal to {ceiling} (the tier's limit)",
                value,
                {"le": ceiling},
            )
        )
    else:
        return value
    return UNSET


def _query_int(query: Mapping[str, str], name: str, default: int, issues: list[FieldIssue]) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        issues.append(
            FieldIssue(
                "int_parsing",
                ("query", name),
                "Input should be a valid integer, unable to parse string as an integer",
                raw,
            )
        )
        return default


def _too_small(loc: tuple[str, ...], value: object, minimum: int) -> FieldIssue:
    return FieldIssue(
        "greater_than_equal",
        loc,
        f"Input should be greater than or equal to {minimum}",
        value,
        {"ge": minimum},
    )
