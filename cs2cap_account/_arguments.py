"""Checks of public arguments, at the boundary: a clear `TypeError` or `ValueError` at once.

Each check names the argument and, for a wrong type, the type it got, never the value
(which could be a key pasted into the wrong place). A bool is never taken for a number,
NaN never for a duration, and infinity only where it means something.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["check_count", "check_flag", "check_int", "check_seconds"]

_NUMBER: Final = (int, float)


def check_seconds(
    value: object,
    name: str,
    *,
    zero: bool = False,
    infinite: bool = False,
    optional: bool = False,
) -> float | None:
    """`value` as a duration in seconds: a real number (not a bool), never NaN.

    Positive, or 0 or more with `zero`; infinity only with `infinite`; None only with
    `optional`. Returns it as a float (None stays None).
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        kind = "a number of seconds" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, got NaN")
    if math.isinf(seconds) and not (infinite and seconds > 0):
        hint = "; pass None for none" if optional else ""
        raise ValueError(f"{name} must be finite{hint}")
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{name} must be {'0 or more' if zero else 'positive'}")
    return seconds


def check_count(value: object, name: str, *, optional: bool = False) -> int | None:
    """`value` as a count: an int (not a bool, not a float) of 0 or more.

    None only with `optional`.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    return check_int(value, name, low=0)


def check_int(value: object, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int (not a bool, not a float) from `low` to `high`, where given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"from {low} to {high}"
        else:
            bounds = f"{low} or more" if low is not None else f"{high} or less"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_flag(value: object, name: str) -> bool:
    """`value` as a bool: True or False, not merely truthy (`"no"` is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value
