"""`SecretKey`: a plaintext credential that never shows itself by accident.

Nor anything built from one: `BearerHeaders`, the request headers that carry it, shows it
redacted, and `forget_frames()` detaches the tracebacks of exceptions whose frames held
it, so an error reporter that captures frame locals (Sentry does by default;
`traceback.TracebackException(capture_locals=True)`) never sees the plaintext.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Final

__all__ = ["BearerHeaders", "SecretKey", "forget_frames", "redact_text"]

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


class BearerHeaders(Mapping[str, str]):
    """Read-only request headers with `Authorization: Bearer <token>`; the repr redacts it.

    A transport reads real strings from it, as from any mapping. `repr()` shows the token
    as `SecretKey` does, so the `headers` local of every frame on the request path is safe
    to capture. The plaintext header value is kept in the object, never in a local.
    """

    __slots__ = ("_items", "_token")
    _items: dict[str, str]
    _token: SecretKey

    def __init__(self, token: SecretKey, others: Mapping[str, str]) -> None:
        self._token = token
        self._items = {"Authorization": "Bearer " + token.reveal(), **others}

    def with_header(self, name: str, value: str) -> BearerHeaders:
        """These headers, plus (or with a new value for) `name`."""
        return BearerHeaders(self._token, {**self._others(), name: value})

    def _others(self) -> dict[str, str]:
        return {key: item for key, item in self._items.items() if key != "Authorization"}

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # The dict's own views: what aiohttp and multidict copy headers from, at dict speed.
    def keys(self) -> KeysView[str]:
        """The header names."""
        return self._items.keys()

    def items(self) -> ItemsView[str, str]:
        """`(name, value)` pairs, the credential in plaintext: what a transport sends."""
        return self._items.items()

    def values(self) -> ValuesView[str]:
        """The header values, the credential in plaintext."""
        return self._items.values()

    def __repr__(self) -> str:
        shown = {**self._items, "Authorization": f"Bearer {self._token.redacted}"}
        return f"BearerHeaders({shown!r})"

    def __reduce__(self) -> tuple[type[BearerHeaders], tuple[SecretKey, dict[str, str]]]:
        return (BearerHeaders, (self._token, self._others()))


def forget_frames(exc: BaseException) -> BaseException:
    """Detach the traceback of `exc` and of every exception in its cause/context chain.

    For an exception raised in frames that held a secret (aiohttp's, holding the request
    headers; a parser's, holding a body with a once-shown key): its type and message stay,
    chained as they were, but no frame and so no local of those frames is reachable from
    it any more. Tracebacks are detached, not cleared with `frame.clear()`, which would
    finalize a coroutine still suspended in another task. Returns `exc`.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        todo.extend(e for e in (link.__cause__, link.__context__) if e is not None)
        grouped = getattr(link, "exceptions", None)  # an exception group
        if isinstance(grouped, tuple):
            todo.extend(e for e in grouped if isinstance(e, BaseException))
    return exc


def redact_text(text: str) -> str:
    """Replace anything shaped like a key or a JWT in `text` with its redacted form."""
    return _SECRET_LIKE.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    # Followed by "…", it is already redacted: leave it, so redacting twice changes nothing.
    if match.string.startswith("…", match.end()):
        return match.group(0)
    return SecretKey(match.group(0)).redacted
