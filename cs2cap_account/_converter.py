"""The one cattrs converter: JSON-decoded bodies in, frozen models out.

Strict where the API is typed (a string stays a string, an int is never a bool or a
float), lenient where it grows (unknown fields are ignored), and every failure comes out
as `MalformedResponseError` naming the field, never a raw cattrs, Key or Type error.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_structure_fn

from cs2cap_account._models import (
    CreatedSubKey,
    KeyInfo,
    ReissuedKey,
    RevokedSubKey,
    SubKeyDetail,
    SubKeyPage,
)
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import MalformedResponseError, ValidationIssue

__all__ = ["KeyEnvelope", "ReissueAnswer", "converter", "parse_timestamp", "structure"]

T = TypeVar("T")

_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
# The shape the API emits, which `datetime.fromisoformat` (3.11+, for the `Z`) reads to
# the same value as the general parser below, ten times faster. Anything else, and any
# value it refuses, takes the general parser (and gets its error message).
_CANONICAL_TIMESTAMP: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}(?:[0-9]{3})?)?Z"
)
_FROMISOFORMAT_READS_Z: Final = sys.version_info >= (3, 11)


@attrs.frozen
class KeyEnvelope:
    """Body of `GET /account/key`: `{"key": KeyInfo}`."""

    key: KeyInfo


@attrs.frozen
class ReissueAnswer:
    """Body of `POST /account/key/reissue`, read so that the once-shown key is never lost.

    Only `key` and `id` are required: they are all a caller needs to go on, and the key is
    shown this once. Every other field is read best effort; `unreadable` names the fields
    that were missing or of an unexpected shape (never their values).
    """

    key: SecretKey
    id: str
    key_prefix: str | None
    created_at: dt.datetime | None
    message: str
    unreadable: tuple[str, ...] = ()


def parse_timestamp(value: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp the API emits into an aware datetime (UTC if unmarked).

    Accepts `Z` or a `±HH:MM` offset and 1 to 9 fractional digits (beyond microseconds,
    the extra digits are dropped).
    """
    if _FROMISOFORMAT_READS_Z and _CANONICAL_TIMESTAMP.fullmatch(value):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass  # out-of-range fields: the general parser raises with its own message
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise ValueError("not an ISO 8601 timestamp")
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    tz = dt.timezone.utc
    if sign is not None:
        offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
        tz = dt.timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz
    )


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _expect(kind: type | tuple[type, ...], name: str) -> Callable[[Any, Any], Any]:
    exact = frozenset(_tuple(kind))

    def hook(value: Any, _: Any) -> Any:
        if value.__class__ in exact:  # what json.loads makes: the common case, decided at once
            return value
        # bool is an int in Python, never in JSON.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise TypeError(f"expected {name}, got {_json_type(value)}")
        return value

    return hook


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected number, got {_json_type(value)}")
    return float(value)


def _structure_timestamp(value: Any, _: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {_json_type(value)}")
    return parse_timestamp(value)


def _structure_secret(value: Any, _: Any) -> SecretKey:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty key string, got {_json_type(value)}")
    return SecretKey(value)


def _structure_any_mapping(value: Any, _: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected object, got {_json_type(value)}")
    return value


def _attrs_factory(cl: type[Any], conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = make_dict_structure_fn(cl, conv)

    def hook(value: Any, _: Any) -> Any:
        # A dict (what json.loads makes) skips the slower abstract Mapping check.
        if value.__class__ is not dict and not isinstance(value, Mapping):
            raise TypeError(f"expected object, got {_json_type(value)}")
        return inner(value, cl)

    return hook


def _structure_reissue_answer(value: Any, _: Any) -> ReissueAnswer:
    """The key and its id, wherever the body keeps them; the rest best effort."""
    body = _reissue_body(value)
    key, key_id = body.get("key"), body.get("id")
    if not isinstance(key, str) or not key:
        raise TypeError(f"no key string in the body (key: {_json_type(key)})")
    if not isinstance(key_id, str) or not key_id:
        raise TypeError(f"no key id in the body (id: {_json_type(key_id)})")
    unreadable: list[str] = []
    prefix = body.get("key_prefix")
    if not isinstance(prefix, str):
        prefix = None
        unreadable.append("key_prefix")
    created_at = _lenient_timestamp(body.get("created_at"))
    if created_at is None:
        unreadable.append("created_at")
    message = body.get("message")
    if not isinstance(message, str):
        message = ""
        unreadable.append("message")
    return ReissueAnswer(
        key=SecretKey(key),
        id=key_id,
        key_prefix=prefix,
        created_at=created_at,
        message=message,
        unreadable=tuple(unreadable),
    )


def _reissue_body(value: Any) -> Mapping[str, Any]:
    """The object holding the new key: the body itself, or one envelope level inside it."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected object, got {_json_type(value)}")
    if isinstance(value.get("key"), str):
        return value
    for inner in value.values():
        if isinstance(inner, Mapping) and isinstance(inner.get("key"), str):
            return inner
    return value


def _lenient_timestamp(value: Any) -> dt.datetime | None:
    """ISO 8601, RFC 1123 (an HTTP date) or Unix seconds (or milliseconds); else None."""
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            pass
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    seconds = value / 1000.0 if value > 1e11 else float(value)  # milliseconds since 1973
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _is_optional(cl: Any) -> bool:
    args = get_args(cl)
    return get_origin(cl) in (Union, types.UnionType) and len(args) == 2 and type(None) in args


def _optional_factory(cl: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """`X | None`: the hook for X is looked up once, here, not on every value."""
    inner_type = next(arg for arg in get_args(cl) if arg is not type(None))
    inner = conv.get_structure_hook(inner_type)

    def hook(value: Any, _: Any) -> Any:
        return None if value is None else inner(value, inner_type)

    return hook


def _tuple_factory(cl: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = homogenous_tuple_structure_factory(cl, conv)

    def hook(value: Any, _: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected array, got {_json_type(value)}")
        return inner(value, cl)

    return hook


def _is_homogenous_tuple(cl: Any) -> bool:
    args = get_args(cl)
    return is_sequence(cl) and len(args) == 2 and args[1] is Ellipsis


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    conv.register_structure_hook(str, _expect(str, "string"))
    conv.register_structure_hook(int, _expect(int, "integer"))
    conv.register_structure_hook(bool, _expect(bool, "boolean"))
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook_func(
        lambda cl: cl == (str | int), _expect((str, int), "string or integer")
    )
    conv.register_structure_hook(dt.datetime, _structure_timestamp)
    conv.register_structure_hook(SecretKey, _structure_secret)
    conv.register_structure_hook_func(lambda cl: cl == Mapping[str, Any], _structure_any_mapping)
    conv.register_structure_hook_factory(_is_homogenous_tuple, _tuple_factory)
    conv.register_structure_hook_factory(_is_optional, _optional_factory)
    conv.register_structure_hook(ReissueAnswer, _structure_reissue_answer)
    conv.register_structure_hook_factory(attrs.has, _attrs_factory)
    # Unstructuring serves the key stores, which must hold the plaintext.
    conv.register_unstructure_hook(SecretKey, SecretKey.reveal)
    conv.register_unstructure_hook(dt.datetime, dt.datetime.isoformat)
    return conv


converter: Final = _make_converter()

# Compile every response's structure function once, at import, not on the first request.
_HOOKS: Final[dict[type[Any], Callable[[Any, Any], Any]]] = {
    cl: converter.get_structure_hook(cl)
    for cl in (
        KeyEnvelope,
        ReissueAnswer,
        ReissuedKey,
        SubKeyPage,
        SubKeyDetail,
        CreatedSubKey,
        RevokedSubKey,
        ValidationIssue,
    )
}


def structure(data: Any, cl: type[T], *, status_code: int | None = None) -> T:
    """Build `cl` from decoded JSON, or raise `MalformedResponseError` naming the field."""
    hook = _HOOKS.get(cl) or converter.get_structure_hook(cl)
    try:
        return hook(data, cl)  # type: ignore[no-any-return]
    except BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="")
        first = problems[0] if problems else "invalid body"
        reason, _, where = first.rpartition(" @ ")
        field = where.lstrip("$.") or None
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MalformedResponseError(
            f"malformed {cl.__name__} response: {reason or first} at field "
            f"{field or '<body>'!s}{more}",
            status_code=status_code,
            field=field,
        ) from exc
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise MalformedResponseError(
            f"malformed {cl.__name__} response: {exc}", status_code=status_code
        ) from exc
