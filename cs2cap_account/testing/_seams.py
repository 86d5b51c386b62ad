"""Seams for tests that must stop a rotation at a precise point, as a crash would.

`after_step(rotator, hook)` has `hook(step)` awaited right after each step of the
rotation protocol (`cs2cap_account.rotation.Step`), in whatever process runs it:

    async def die_after_the_reissue(step: Step) -> None:
        if step is Step.REISSUED:
            os.kill(os.getpid(), signal.SIGKILL)

    after_step(rotator, die_after_the_reissue)

A hook may also pause (await an event), change the store or the fake's state, or raise;
what it raises ends the rotation there, as a failure at that point would.

`rotation_task(rotator)` and `running_tasks(rotator)` show what a rotator has in flight
(its rotation, catch-ups started after a 401), so a test driving several rotators can wait
until each is quiet without reaching into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from cs2cap_account.rotation import KeyRotator
from cs2cap_account.rotation._steps import StepHook

__all__ = ["after_step", "rotation_task", "running_tasks"]


def after_step(rotator: KeyRotator, hook: StepHook) -> Callable[[], None]:
    """Await `hook(step)` after every protocol step `rotator` passes; returns a remover.

    Hooks run in the order they were added, inside the rotation (and under the store's
    lock), so a hook that waits holds the rotation up there.
    """
    return rotator._steps.add(hook)  # the seam's one reach inside


def rotation_task(rotator: KeyRotator) -> asyncio.Task[Any] | None:
    """The task of the rotation `rotator` has in flight (shared by `rotate_now` callers)."""
    return rotator._inflight


def running_tasks(rotator: KeyRotator) -> list[asyncio.Task[Any]]:
    """Every task `rotator` started and has not seen end: its rotation, its catch-ups."""
    inflight = rotator._inflight
    tasks = [] if inflight is None else [inflight]
    return [*tasks, *rotator._background.tasks]
