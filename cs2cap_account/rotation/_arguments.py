"""The rotator's public arguments, checked where they come in.

A wrong type is a `TypeError`, a value out of range (NaN, infinite, negative, empty) a
`ValueError`, both naming the argument: a bad setting fails the call that passed it,
never a rotation later (a journal the store cannot read back, a recovery that cannot
start).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from typing import Final

from cs2cap_account._secret import SecretKey, redact_text

__all__ = [
    "MAX_REASON_LENGTH",
    "checked_callback",
    "checked_child_name",
    "checked_children",
    "checked_flag",
    "checked_fraction",
    "checked_reason",
    "checked_seconds",
    "checked_span",
    "checked_token",
]

MAX_REASON_LENGTH: Final = 200


def _number(value: object, name: str) -> float:
    """`value` as a float: a real number, not a bool, finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of seconds, not {number!r}")
    return number


def checked_seconds(value: object, name: str) -> float:
    """A positive, finite number of seconds."""
    seconds = _number(value, name)
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, not {seconds!r}")
    return seconds


def checked_fraction(value: object, name: str) -> float:
    """A fraction in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    fraction = float(value)
    if not 0 <= fraction < 1:  # NaN fails this too
        raise ValueError(f"{name} must be a fraction in [0, 1), not {fraction!r}")
    return fraction


def checked_span(value: object, name: str) -> dt.timedelta | None:
    """None, or a timedelta or number of seconds that is finite and not negative."""
    if value is None:
        return None
    span = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=_number(value, name))
    if span < dt.timedelta(0):
        raise ValueError(f"{name} must not be negative")
    return span


def checked_token(value: object, name: str) -> SecretKey | None:
    """None, or a non-empty `str` or `SecretKey` (never shown in the error)."""
    if value is None or isinstance(value, SecretKey):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or SecretKey, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return SecretKey(value)


def checked_flag(value: object, name: str) -> bool:
    """A bool, and only a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def checked_reason(value: object) -> str:
    """A rotation's reason: a short, non-empty, printable `str` (it goes in the journal)."""
    if not isinstance(value, str):
        raise TypeError(f"reason must be a str, not {type(value).__name__}")
    if not value.strip() or len(value) > MAX_REASON_LENGTH or not value.isprintable():
        raise ValueError(
            f"reason must be non-empty printable text of at most {MAX_REASON_LENGTH} characters"
        )
    return value


def checked_callback(value: object) -> Callable[..., object]:
    """A callable."""
    if not callable(value):
        raise TypeError(f"on_rotate needs a callable, not {type(value).__name__}")
    return value


def checked_child_name(value: object, what: str = "name") -> str:
    """A child key's name, as the server knows it: a non-empty string, not a key."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a child key's name (a str), not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} must be a child key's name, not empty")
    if redact_text(value) != value:
        # It goes in the journal, in logs and in events: it must not be a key.
        raise ValueError(f"{what} looks like an API key or a token, not a child key's name")
    return value


def checked_children(value: object) -> tuple[str, ...] | None:
    """The names of the child keys to rotate (None: every child the store records)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"children must be a list of child key names, not {type(value).__name__}")
    return tuple(dict.fromkeys(checked_child_name(name, "each of children") for name in value))
