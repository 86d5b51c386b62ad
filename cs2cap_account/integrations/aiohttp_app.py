"""A `KeyRotator` for the life of an `aiohttp.web.Application`, through `cleanup_ctx`.

`KeyRotator.attach(app)` calls `attach()` here. Nothing of aiohttp is imported: an
application brings it along.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from cs2cap_account.rotation import KeyRotator

__all__ = ["attach"]


def attach(rotator: KeyRotator, app: web.Application) -> None:
    """Start `rotator` when `app` starts up, and stop it when `app` cleans up."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        async with rotator:
            yield

    app.cleanup_ctx.append(lifetime)
