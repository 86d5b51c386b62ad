"""The rotator's run loops: the schedule of checks, and following the store's changes.

Both run until cancelled and never end by themselves: a failing check is retried with
backoff, a change feed that fails is followed again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from cs2cap_account._clock import Clock
from cs2cap_account._retry import backoff_capped_at, before_each_wait, retrying
from cs2cap_account.rotation._schedule import jittered

__all__ = ["follow", "schedule"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

_CHECK_BACKOFF_CAP: Final = 300.0  # seconds: failed checks are retried at least this often
_FOLLOW_AGAIN_AFTER: Final = 1.0  # seconds after a change feed failed


def _log_failed_check(error: BaseException | None, wait: float) -> None:
    logger.error("rotation check failed (%s); next try in %.1f s", error, wait)


async def schedule(
    check: Callable[[], Awaitable[Any]], *, clock: Clock, interval: float, jitter: float
) -> None:
    """`check()` now, then every `interval` seconds (± `jitter`), retrying failures."""
    wait = backoff_capped_at(min(_CHECK_BACKOFF_CAP, interval))
    while True:
        async for attempt in retrying(
            attempts=None, clock=clock, wait=wait, before_sleep=before_each_wait(_log_failed_check)
        ):
            with attempt:
                await check()
        await clock.sleep(jittered(interval, jitter))


async def follow(
    changes: Callable[[], AsyncIterator[int]],
    *,
    held_generation: Callable[[], int],
    catch_up: Callable[[], Awaitable[bool]],
    clock: Clock,
) -> None:
    """Catch up whenever the store reports a generation other than the one held.

    `catch_up()` returns True to be asked again at the next report whatever generation
    it names (a rotation in progress elsewhere: its journal's close keeps the generation;
    a store holding child keys, which rotate without a new generation). The first report
    is always caught up with, so that it can say so.
    """
    again = True
    while True:
        try:
            async for generation in changes():
                if again or generation != held_generation():
                    again = await catch_up()
        except Exception as exc:  # never let a bad message end the follower
            logger.error("following the key store failed (%s); following again", exc)
            await clock.sleep(_FOLLOW_AGAIN_AFTER)
