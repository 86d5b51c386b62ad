"""`SecretKey`: a plaintext credential that never shows itself by accident."""

from __future__ import annotations

import hmac
import re
from typing import Final

__all__ = ["SecretKey", "redact_text"]

# The key's type, never any of its random part: `sk_live_root_`, `sk_live_child_`, `sk_test_`.
_PREFIX: Final = re.compile(r"^sk_(?:live|test)_(?:(?:root|child)_)?")
# Anything that looks like a CS2Cap key or a JWT, wherever it appears in free text.
_SECRET_LIKE: Final = re.compile(
    r"sk_(?:live|test)_[A-Za-z0-9_\-]{4,}"
    r"|eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
)
_SHOW_TAIL_FROM: Final = 16


class SecretKey:
    """A plaintext API key or session token.

    `str()` and `repr()` show only the key's type prefix and its last four characters
    (`sk_live_root_…a1b2`), so a key can be logged, printed or put in an exception by
    mistake without leaking. Call `reveal()` for the plaintext, at the one place that
    needs it. Two secrets compare equal in constant time when their plaintexts match.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if hasattr(self, "_value"):
            raise AttributeError("SecretKey is immutable")
        if not isinstance(value, str):
            raise TypeError("SecretKey needs a str")
        if not value or value != value.strip():
            raise ValueError("a key must be a non-empty string without surrounding whitespace")
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SecretKey is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("SecretKey is immutable")

    def reveal(self) -> str:
        """Return the plaintext. Keep the result out of logs, reprs and URLs."""
        return self._value

    @property
    def redacted(self) -> str:
        """The displayable form: type prefix plus the last four characters."""
        value = self._value
        match = _PREFIX.match(value)
        prefix = match.group(0) if match and match.end() < len(value) else ""
        # Only a long secret part shows a tail; a short one would be given away whole.
        tail = value[-4:] if len(value) - len(prefix) >= _SHOW_TAIL_FROM else ""
        return f"{prefix}…{tail}" if tail else f"{prefix}…"

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"SecretKey('{self.redacted}')"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((SecretKey, self._value))

    def __reduce__(self) -> tuple[type[SecretKey], tuple[str]]:
        return (SecretKey, (self._value,))


def redact_text(text: str) -> str:
    """Replace anything shaped like a key or a JWT in `text` with its redacted form."""
    return _SECRET_LIKE.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Followed by "…", it is already redacted: leave it, so redacting twice changes nothing.
    if match.string.startswith("…", match.end()):
        return match.group(0)
    return SecretKey(match.group(0)).redacted
