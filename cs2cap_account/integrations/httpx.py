"""`KeyAuth`: an `httpx.AsyncClient` that always sends the rotator's current key.

```python
client = httpx.AsyncClient(auth=KeyAuth(rotator))
```

Needs the `httpx` extra (`pip install 'cs2cap-account[httpx]'`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from cs2cap_account.integrations._refusal import checked_rotator, key_after_refusal

if TYPE_CHECKING:
    from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["KeyAuth"]


class KeyAuth(httpx.Auth):
    """httpx authentication with `Authorization: Bearer <current key>`.

    The key is `rotator.current_key` when the request is sent. A request refused with 401
    is sent once more, with the key the rotator switched to meanwhile or a newer one read
    from its store (waiting for a rotation in flight in this process); never a reissue.
    For `httpx.AsyncClient` only: the store is read asynchronously.
    """

    def __init__(self, rotator: KeyRotator) -> None:
        self._rotator = checked_rotator(rotator)

    def __repr__(self) -> str:
        return f"KeyAuth({self._rotator!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Refused: the rotator lives on an event loop; use `httpx.AsyncClient`."""
        raise RuntimeError("KeyAuth works with httpx.AsyncClient, not httpx.Client")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send `request` with the current key; after a 401, once more with a newer one."""
        key = self._rotator.current_key
        request.headers["Authorization"] = f"Bearer {key.reveal()}"
        response = yield request
        if response.status_code != 401:
            return
        newer = await key_after_refusal(self._rotator, key)
        if newer is None:
            return
        request.headers["Authorization"] = f"Bearer {newer.reveal()}"
        yield request
