"""`KeyMiddleware`: an `aiohttp.ClientSession` that always sends the rotator's current key.

```python
session = aiohttp.ClientSession(middlewares=[KeyMiddleware(rotator)])
```

Needs aiohttp 3.12 or later (client middlewares).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cs2cap_account.integrations._refusal import checked_rotator, key_after_refusal

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

    from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["KeyMiddleware"]


class KeyMiddleware:
    """A client middleware that sets `Authorization: Bearer <current key>` on each request.

    The key is `rotator.current_key` when the request is sent, so a rotation takes
    effect on the next request. A request refused with 401 is sent once more, with the
    key the rotator switched to meanwhile or a newer one read from its store (waiting for
    a rotation in flight in this process); never a reissue. If there is no other key,
    the 401 is returned as it is. Give it a session used for CS2Cap alone: it
    authenticates every request the session makes.
    """

    def __init__(self, rotator: KeyRotator) -> None:
        self._rotator = checked_rotator(rotator)

    def __repr__(self) -> str:
        return f"KeyMiddleware({self._rotator!r})"

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """Send `request` with the current key; after a 401, once more with a newer one."""
        key = self._rotator.current_key
        request.headers["Authorization"] = f"Bearer {key.reveal()}"
        response = await handler(request)
        if response.status != 401:
            return response
        newer = await key_after_refusal(self._rotator, key)
        if newer is None:
            return response
        response.release()
        request.headers["Authorization"] = f"Bearer {newer.reveal()}"
        return await handler(request)
