"""Helpers for tests that run the fake in chaos mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_pytest_log_capture", "server_idle"]


def _pending_handlers() -> int:
    """How many web requests the aiohttp servers in this loop are still handling."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("RequestHandler._handle_request")
    )


async def server_idle(bound: float = 5.0) -> int:
    """Wait (at most `bound` real seconds) until no request is being handled any more.

    A delayed request runs its handler after the client gave up on it; so before the
    state of the fake is judged, every such late handler must have landed. Returns how
    many handlers were still pending when the wait began.
    """
    pending = _pending_handlers()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while _pending_handlers():
        if loop.time() > deadline:
            raise AssertionError(f"the fake still handles requests after {bound} s")
        await asyncio.sleep(0.002)
    return pending


@contextmanager
def quiet_pytest_log_capture(level: int = logging.WARNING) -> Iterator[None]:
    """Have pytest's own log capture keep only records at `level` and up, for a while.

    pytest keeps every captured record for the test report; over tens of thousands of
    requests that is a lot of memory and time that has nothing to do with the SDK. The
    secret audit's handler (see tests/conftest.py) still sees every record.
    """
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if type(handler).__module__.startswith("_pytest")
    ]
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(level)
    try:
        yield
    finally:
        for handler, old in zip(handlers, levels, strict=True):
            handler.setLevel(old)
