"""Seams for tests that must stop a rotation at a precise point, as a crash would.

`after_step(rotator, hook)` has `hook(step)` awaited right after each step of the
rotation protocol (`cs2cap_account.rotation.Step`), in whatever process runs it:

    async def die_after_the_reissue(step: Step) -> None:
        if step is Step.REISSUED:
            os.kill(os.getpid(), signal.SIGKILL)

    after_step(rotator, die_after_the_reissue)

A hook may also pause (await an event), change the store or the fake's state, or raise;
what it raises ends the rotation there, as a failure at that point would.
"""

from __future__ import annotations

from collections.abc import Callable

from cs2cap_account.rotation import KeyRotator
from cs2cap_account.rotation._steps import StepHook

__all__ = ["after_step"]


def after_step(rotator: KeyRotator, hook: StepHook) -> Callable[[], None]:
    """Await `hook(step)` after every protocol step `rotator` passes; returns a remover.

    Hooks run in the order they were added, inside the rotation (and under the store's
    lock), so a hook that waits holds the rotation up there.
    """
    return rotator._steps.add(hook)  # the seam's one reach inside
