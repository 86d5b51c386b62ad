"""The protocol's steps, named, and the seam that crash tests hook into after each.

`Step` names the points of the nine-step protocol, and of a child key's own rotation, at
which a process can die and leave a journal for the next rotator to finish. `StepHooks`
calls whatever hooks a test registered (through `cs2cap_account.testing.after_step`) as
each is passed; with none registered, passing a step costs one check.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

__all__ = ["Step", "StepHook", "StepHooks"]


class Step(str, enum.Enum):
    """A point in the rotation protocol, just passed (compares equal to its value)."""

    JOURNALED = "journaled"
    """Steps 1-3: the journal (and the child keys' snapshot) is in the store."""
    REISSUED = "reissued"
    """Step 4: the reissue answered; its key is in memory only."""
    SAVED = "saved"
    """Steps 5-6: the new key is saved as the next generation and in use."""
    VERIFIED = "verified"
    """Step 7: the new key authenticates."""
    CHILDREN = "children"
    """Step 8: the child keys are re-created (or there were none to re-create)."""
    ANNOUNCED = "announced"
    """Step 9: callbacks and `events()` were told; the journal is closed next."""
    CHILD_JOURNALED = "child-journaled"
    """A child key's rotation: its journal is in the store (`child_rotations`)."""
    CHILD_REISSUED = "child-reissued"
    """A child key's reissue answered; its new key is in memory only."""
    CHILD_SAVED = "child-saved"
    """A child key's new key is saved in the store under its name."""
    CHILD_VERIFIED = "child-verified"
    """A child key's new key authenticates (`GET /account/key` with it)."""
    CHILD_ANNOUNCED = "child-announced"
    """A child key's new key was told; its journal is closed next."""


StepHook = Callable[[Step], Awaitable[None]]


class StepHooks:
    """The hooks awaited after each step, in the order they were added."""

    __slots__ = ("_hooks",)

    def __init__(self) -> None:
        self._hooks: list[StepHook] = []

    def add(self, hook: StepHook) -> Callable[[], None]:
        """Await `hook(step)` after every step from now on; returns a remover."""
        self._hooks.append(hook)

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return remove

    async def passed(self, step: Step) -> None:
        """Tell every hook that `step` was just passed."""
        for hook in tuple(self._hooks):
            await hook(step)
