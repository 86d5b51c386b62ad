"""Hypothesis strategies for response bodies, built from the published schemas.

`tests/schemas/*.json` are OpenAPI documents; `body(name)` turns one of their component
schemas into a strategy for JSON values that schema accepts, and `mutated(name)` into a
strategy for near-misses: a required field dropped, a value of the wrong type, a null, a
huge number, a bad or exotic timestamp, or the whole body replaced by another JSON value.

The schemas are loose in places where the API is not: a plaintext key is any string to
them, an id any string. Where the API contract (`API-CONTRACT.md`) is precise, the valid
strategies follow it: keys look like keys (`sk_live_root_…`), ids are UUIDs, and
timestamps are ISO 8601 in the forms the API sends (`Z` or an offset, 0 to 9 fractional
digits).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

from hypothesis import strategies as st

__all__ = ["BODIES", "body", "json_values", "mutated", "timestamps"]

SCHEMAS: Final = Path(__file__).resolve().parent.parent / "schemas"
KEYS_DOC: Final = "cs2cap-openapi-account-keys.json"
ROOT_DOC: Final = "cs2cap-account-root-key-routes.json"

# The delete route's 200 is a free-form object in the published spec; the contract says
# `{"ok": true, "key_id": uuid, "revoked_at": ts}`. Written here in the same dialect.
_REVOKED: Final = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "key_id": {"type": "string", "format": "uuid"},
        "revoked_at": {"type": "string", "format": "date-time"},
    },
    "required": ["ok"],
}

# The response bodies to fuzz, by name: (document, component) or an inline schema.
BODIES: Final[dict[str, tuple[str, str] | dict[str, Any]]] = {
    "KeyResponse": (ROOT_DOC, "KeyResponse"),
    "ReissueKeyResponse": (ROOT_DOC, "ReissueKeyResponse"),
    "ChildAPIKeyListResponse": (KEYS_DOC, "ChildAPIKeyListResponse"),
    "ChildAPIKeyDetailResponse": (KEYS_DOC, "ChildAPIKeyDetailResponse"),
    "ChildAPIKeyCreateResponse": (KEYS_DOC, "ChildAPIKeyCreateResponse"),
    "DeleteSubKeyResponse": _REVOKED,
}

# Properties whose format the contract pins down beyond the schema.
_KEY_FIELDS: Final = {"key"}  # where the schema says string: the plaintext key
_ID_FIELDS: Final = {"id", "root_key_id", "key_id"}

json_values: Final = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value, small."""


@cache
def _document(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


def _resolve(schema: Mapping[str, Any], doc: str) -> tuple[Mapping[str, Any], str]:
    """Follow `$ref` (within a document or into the other one) to a concrete schema."""
    while "$ref" in schema:
        target, _, pointer = str(schema["$ref"]).partition("#")
        doc = target or doc
        node: Any = _document(doc)
        for part in pointer.strip("/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, doc


def _schema(name: str) -> tuple[Mapping[str, Any], str]:
    spec = BODIES[name]
    if isinstance(spec, dict):
        return spec, KEYS_DOC
    doc, component = spec
    return _resolve({"$ref": f"{doc}#/components/schemas/{component}"}, doc)


def _format_timestamp(moment: dt.datetime, digits: int, zone: str) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}"[:digits]
    return text + zone


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """An ISO 8601 timestamp as the API may send it: `Z`, `+00:00` or another offset,
    and 0 to 9 fractional digits.
    """
    moment = draw(
        st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9998, 12, 31))
    )
    digits = draw(st.sampled_from([0, 0, 1, 3, 6, 9]))
    minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
    offset = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    zone = draw(st.sampled_from(["Z", "Z", "+00:00", offset]))
    return _format_timestamp(moment, digits, zone)


def _string(schema: Mapping[str, Any], field: str | None) -> st.SearchStrategy[Any]:
    if "const" in schema:
        return st.just(schema["const"])
    fmt = schema.get("format")
    if fmt == "date-time":
        return timestamps()
    if fmt == "uuid" or field in _ID_FIELDS:
        return st.uuids().map(str)
    if field in _KEY_FIELDS:
        prefix = str(schema.get("pattern", "^sk_live_child_")).lstrip("^")
        return st.from_regex(rf"\A{prefix}[A-Za-z0-9_-]{{16,43}}\Z")
    return st.text(
        min_size=int(schema.get("minLength", 0)), max_size=min(int(schema.get("maxLength", 40)), 40)
    )


def _strategy(schema: Mapping[str, Any], doc: str, field: str | None) -> st.SearchStrategy[Any]:
    schema, doc = _resolve(schema, doc)
    if "anyOf" in schema:
        return st.one_of([_strategy(option, doc, field) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        extra = st.dictionaries(
            st.sampled_from(["x_new", "links", "meta"]), json_values, max_size=2
        )
        fixed = st.fixed_dictionaries(
            {name: _strategy(sub, doc, name) for name, sub in props.items() if name in required},
            optional={
                name: _strategy(sub, doc, name)
                for name, sub in props.items()
                if name not in required
            },
        )
        # The API grows: unknown fields must be tolerated, so valid bodies carry some.
        return st.builds(lambda known, more: {**more, **known}, fixed, extra)
    simple: dict[Any, Callable[[], st.SearchStrategy[Any]]] = {
        "array": lambda: st.lists(_strategy(schema.get("items", {}), doc, field), max_size=3),
        "string": lambda: _string(schema, field),
        "integer": lambda: _integers(schema),
        "boolean": st.booleans,
        "null": st.none,
    }
    make = simple.get(kind)
    return json_values if make is None else make()


def _integers(schema: Mapping[str, Any]) -> st.SearchStrategy[int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    return st.integers(
        min_value=None if low is None else int(low), max_value=None if high is None else int(high)
    )


def body(name: str) -> st.SearchStrategy[Any]:
    """Valid bodies of the named response (a key of `BODIES`)."""
    schema, doc = _schema(name)
    return _strategy(schema, doc, None)


# --- near-misses ---------------------------------------------------------------------------

_BAD_TIMESTAMPS: Final = st.sampled_from(
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-12-31T23:59:60Z",  # a leap second
        "0000-01-01T00:00:00Z",
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+99:99",
        "2026-01-01",
        "2026-01-01T00:00",
        "2026-01-01T00:00:00.1234567890Z",
        "2026-01-01T00:00:00ZZ",
        "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",  # Arabic-Indic digits
        "+12026-01-01T00:00:00Z",
        "2026-01-01T00:00:00 Z",
        "1767225600",
    ]
) | st.text(max_size=30)

_HUGE: Final = st.sampled_from([2**63, -(2**63) - 1, 10**100, -(10**300), 1e308, -1e308, 2**1023])


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside `value` (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _edit(value: Any, path: tuple[str | int, ...], change: Callable[[Any, str | int], None]) -> Any:
    """A deep copy of `value` with `change(parent, key)` applied at `path`."""
    copy = json.loads(json.dumps(value))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    change(parent, path[-1])
    return copy


@st.composite
def _mutate(draw: st.DrawFn, valid: Any) -> Any:
    paths = _paths(valid)
    how = draw(st.sampled_from(["replace", "drop", "null", "huge", "timestamp", "whole"]))
    if how == "whole" or not paths:
        return draw(json_values)
    path = draw(st.sampled_from(paths))

    def put(new: Any) -> Callable[[Any, str | int], None]:
        def change(parent: Any, key: str | int) -> None:
            parent[key] = new

        return change

    def drop(parent: Any, key: str | int) -> None:
        del parent[key]

    if how == "drop":
        return _edit(valid, path, drop)
    new = {
        "replace": json_values,
        "null": st.none(),
        "huge": _HUGE,
        "timestamp": _BAD_TIMESTAMPS,
    }[how]
    return _edit(valid, path, put(draw(new)))


def mutated(name: str) -> st.SearchStrategy[Any]:
    """Near-misses of the named response's valid bodies (some may still be valid)."""
    return body(name).flatmap(_mutate)
