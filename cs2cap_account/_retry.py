"""Tenacity, wrapped once: the backoff every retry in the SDK uses.

This is the one module that imports tenacity.
The session layer asks an `AttemptBudget` after each failed attempt whether another is
allowed and how long to back off first; the rotator's own retries (store writes,
verification, callbacks, failed schedule checks) use `retrying()`. Both sleep through the
injected `Clock`, so tests never wait for real.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs
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
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from cs2cap_account._clock import Clock

__all__ = ["BACKOFF", "AttemptBudget", "retrying"]

# 0.5 s, 1 s, 2 s, 4 s, then 7.5 s, each plus up to 0.5 s of jitter: never above 8 s.
BACKOFF: Final[wait_base] = wait_exponential(multiplier=0.5, max=7.5) + wait_random(0, 0.5)
# Tenacity's strategies read their inputs from a call state tied to a retrying object.
_BACKOFF_RETRYING: Final = AsyncRetrying(wait=BACKOFF, reraise=True)


@attrs.frozen
class AttemptBudget:
    """`attempts` tries in all, with `BACKOFF` between them.

    Tenacity's stop and wait strategies, asked one failed attempt at a time by a loop
    that does its own waiting (the session's).
    """

    attempts: int
    _stop: stop_base = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_stop", stop_after_attempt(self.attempts))

    def backoff(self, attempt: int) -> float | None:
        """The wait after failed attempt `attempt` (1-based); None when it was the last."""
        state = RetryCallState(_BACKOFF_RETRYING, None, (), {})
        state.attempt_number = attempt
        if self._stop(state):
            return None
        return _BACKOFF_RETRYING.wait(state)


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
