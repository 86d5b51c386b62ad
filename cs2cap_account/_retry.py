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


# -- Named strategies for the rotator's retries ------------------------------------------
# Built from the names imported above, so that tenacity stays imported here alone.


class _RetryIf(retry_base):
    """Retry an attempt whose exception satisfies `predicate`."""

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        return error is not None and self._predicate(error)


def retry_on(*kinds: type[BaseException]) -> retry_base:
    """Retry an attempt that raised one of `kinds`."""
    return retry_if_exception_type(kinds)


def retry_on_unless(kind: type[BaseException], unless: type[BaseException]) -> retry_base:
    """Retry an attempt that raised `kind`, unless it is also an `unless`."""
    return _RetryIf(lambda error: isinstance(error, kind) and not isinstance(error, unless))


def backoff_capped_at(cap: float) -> wait_base:
    """1 s, 2 s, 4 s, ... up to `cap`, each plus up to 1 s of jitter (failed checks)."""
    return wait_exponential(multiplier=1.0, max=cap) + wait_random(0, 1.0)


def before_each_wait(
    report: Callable[[BaseException | None, float], None],
) -> Callable[[RetryCallState], None]:
    """A `before_sleep` calling `report(error, seconds until the next try)`."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        report(error, state.next_action.sleep if state.next_action else 0.0)

    return before_sleep


__all__ += ["backoff_capped_at", "before_each_wait", "retry_on", "retry_on_unless"]
