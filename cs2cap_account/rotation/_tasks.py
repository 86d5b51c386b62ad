"""Tasks the rotator runs: work that must finish, and catch-ups in the background.

Work that must finish runs on even when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

__all__ = ["Background", "finish_even_if_cancelled"]

T = TypeVar("T")

logger: Final = logging.getLogger("cs2cap_account.rotation")


async def finish_even_if_cancelled(aw: Awaitable[T]) -> T:
    """Await `aw` to the end even if the caller is cancelled meanwhile; then re-raise that."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue
        if not task.cancelled() and task.exception() is not None:
            logger.error("interrupted while finishing: %s", task.exception())
        raise


class Background:
    """Tasks started and not awaited: their failures are logged, `stop()` cancels them."""

    __slots__ = ("tasks",)

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def busy(self) -> bool:
        """Whether one of them is still running."""
        return any(not task.done() for task in self.tasks)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run `coro` in a task of its own."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("catching up with the key store failed: %s", task.exception())
