"""Tenacity, wrapped once: the backoff every retry in the SDK uses.

The session layer drives requests with these strategies; the rotator's own retries
(store writes, verification, callbacks, failed schedule checks) use `retrying()`.
Both sleep through the injected `Clock`, so tests never wait for real.
"""

from __future__ import annotations

from typing import Final

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.retry import retry_base
from tenacity.wait import wait_base

from cs2cap_account._clock import Clock

__all__ = ["BACKOFF", "retrying"]

# 0.5 s, 1 s, 2 s, ... capped at 8 s, each plus up to 0.5 s of jitter.
BACKOFF: Final[wait_base] = wait_exponential_jitter(initial=0.5, max=8.0, jitter=0.5)


def retrying(
    *,
    attempts: int,
    clock: Clock,
    retry: retry_base | None = None,
    wait: wait_base = BACKOFF,
) -> AsyncRetrying:
    """An `AsyncRetrying` that makes `attempts` tries with `wait` between, on `clock`.

    By default every `Exception` is retried; the last one is re-raised as it was.
    """
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry or retry_if_exception(lambda exc: isinstance(exc, Exception)),
        sleep=clock.sleep,
        reraise=True,
    )
