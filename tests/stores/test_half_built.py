"""Objects whose construction failed can still be shown, and show no key.

Error reporters that capture locals call `repr()` on `self` in the failing `__init__`
frame; a repr that raises there breaks the report itself.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cs2cap_account import AccountClient, FileKeyStore, KeyRotator, RedisKeyStore

ROOT_KEY = "sk_live_root_Q3vX9kT2mZp8LrW4yB7nC1dF"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY2NvdW50In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def _rotator_with_a_bad_interval() -> Any:
    client = AccountClient(ROOT_KEY, transport=_NoTransport())
    return KeyRotator(client, recovery_token=JWT, check_interval=float("nan"))


class _NoTransport:
    """A transport that is never asked for anything: construction fails first."""

    closed = False

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is sent")

    async def aclose(self) -> None:
        """Nothing to close."""


CASES: dict[str, Callable[[], Any]] = {
    "RedisKeyStore": lambda: RedisKeyStore("redis://127.0.0.1:1/0", lease_ttl=-1),
    "FileKeyStore": lambda: FileKeyStore(b"key.json"),  # type: ignore[arg-type]
    "KeyRotator": _rotator_with_a_bad_interval,
}


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_a_failed_construction_formats_with_captured_locals(
    build: Callable[[], Any], tmp_path: Path
) -> None:
    """The traceback, locals included, formats without raising and holds no key."""
    with pytest.raises((TypeError, ValueError)) as caught:
        build()
    text = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "repr() raised" not in text
    assert ROOT_KEY not in text
    assert JWT not in text
