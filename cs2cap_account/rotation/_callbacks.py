"""Telling callbacks about a new key: concurrently, bounded in time, retried, never fatal."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from cs2cap_account._clock import Clock
from cs2cap_account._retry import retrying
from cs2cap_account._secret import redact_text
from cs2cap_account.rotation._event import CallbackFailure, RotationEvent

__all__ = ["Callback", "run_callbacks"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

Callback = Callable[[RotationEvent], "Awaitable[Any] | Any"]


def _name(callback: Callback) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)


async def run_callbacks(
    callbacks: Sequence[Callback],
    event: RotationEvent,
    *,
    timeout: float,
    attempts: int,
    clock: Clock,
) -> tuple[CallbackFailure, ...]:
    """Call every callback with `event`; return the ones that failed every attempt.

    Sync callbacks run inline, async ones concurrently, each within `timeout` seconds.
    A callback that raises or times out is retried with backoff, up to `attempts` tries
    in all, without holding up the others. Nothing here raises.
    """
    loop = asyncio.get_running_loop()
    running: dict[asyncio.Future[Any], Callback] = {}
    failed: list[tuple[Callback, BaseException]] = []
    for callback in callbacks:
        try:
            result = callback(event)
        except Exception as exc:
            failed.append((callback, exc))
            continue
        if result is None:  # what a sync callback returns: nothing to await
            continue
        if type(result) is types.CoroutineType:  # an async callback: skip ensure_future's checks
            running[loop.create_task(result)] = callback
        elif inspect.isawaitable(result):
            running[asyncio.ensure_future(result)] = callback
    if running:
        done, late = await _wait_all(loop, running, timeout)
        for future in late:
            future.cancel()
            failed.append((running[future], TimeoutError(f"did not finish within {timeout:g} s")))
        if late:
            await asyncio.wait(late)
        for future in done:
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or error is not None:
                failed.append((running[future], error or asyncio.CancelledError()))
    if not failed:
        return ()
    retried = await asyncio.gather(
        *(
            _retry(callback, event, error, timeout=timeout, attempts=attempts, clock=clock)
            for callback, error in failed
        )
    )
    return tuple(failure for failure in retried if failure is not None)


async def _wait_all(
    loop: asyncio.AbstractEventLoop, futures: Iterable[asyncio.Future[Any]], timeout: float
) -> tuple[list[asyncio.Future[Any]], list[asyncio.Future[Any]]]:
    """Wait until every future is done or `timeout` seconds have passed: (done, late).

    Like `asyncio.wait(futures, timeout=...)`, but waits on one pending future at a time,
    in order: most callbacks finish within the loop pass that starts them, so this hooks
    a wake-up onto a few futures instead of onto every one of them.
    """
    deadline = loop.time() + timeout
    done: list[asyncio.Future[Any]] = []
    late: list[asyncio.Future[Any]] = []
    for future in futures:
        if not future.done():
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait((future,), timeout=remaining)
        (done if future.done() else late).append(future)
    return done, late


async def _retry(
    callback: Callback,
    event: RotationEvent,
    first_error: BaseException,
    *,
    timeout: float,
    attempts: int,
    clock: Clock,
) -> CallbackFailure | None:
    error = first_error
    if attempts > 1:
        try:
            async for attempt in retrying(attempts=attempts - 1, clock=clock):
                with attempt:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, timeout)
        except Exception as exc:
            error = exc
        else:
            return None
    logger.error(
        "rotation callback %s failed %d time(s): %s",
        _name(callback),
        attempts,
        redact_text(repr(error)),
    )
    return CallbackFailure(_name(callback), error, attempts)
