"""Tenacity, wrapped once: the backoff every retry in the SDK uses.

The session layer drives requests with these strategies; the rotator's own retries
(store writes, verification, callbacks, failed schedule checks) use `retrying()`.
Both sleep through the injected `Clock`, so tests never wait for real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
    wait_random,
)
from tenacity.retry import retry_base
from tenacity.wait import wait_base

from cs2cap_account._clock import Clock

__all__ = ["BACKOFF", "retrying"]

# 0.5 s, 1 s, 2 s, 4 s, then 7.5 s, each plus up to 0.5 s of jitter: never above 8 s.
BACKOFF: Final[wait_base] = wait_exponential(multiplier=0.5, max=7.5) + wait_random(0, 0.5)


def retrying(
    *,
    attempts: int | None,
    clock: Clock,
    retry: retry_base | None = None,
    wait: wait_base = BACKOFF,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """An `AsyncRetrying` that makes `attempts` tries (None: forever), waiting on `clock`.

    By default every `Exception` is retried; the last one is re-raised as it was.
    """
    return AsyncRetrying(
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        wait=wait,
        retry=retry or retry_if_exception_type(Exception),
        sleep=clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
