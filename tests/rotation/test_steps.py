"""The crash-test seam: `cs2cap_account.testing.after_step` and `rotation.Step`."""

from __future__ import annotations

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore
from cs2cap_account.rotation import Step
from cs2cap_account.testing import FakeCS2CapAPI, after_step

# The steps of a root rotation; a child key's own rotation has the "child-" ones.
ROOT_STEPS = [step for step in Step if not step.startswith("child-")]


async def test_a_rotation_passes_the_six_steps_in_order(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """Every hook is awaited after each step, in the protocol's order, with the step."""
    await client.sub_keys.create("bot")
    rotator = KeyRotator(client, store=store, recreate_sub_keys=True)
    first: list[Step] = []
    second: list[Step] = []

    async def note(step: Step) -> None:
        first.append(step)

    async def also(step: Step) -> None:
        second.append(step)

    after_step(rotator, note)
    after_step(rotator, also)
    await rotator.rotate_now()
    assert first == second == ROOT_STEPS
    assert [step.value for step in first] == [
        "journaled",
        "reissued",
        "saved",
        "verified",
        "children",
        "announced",
    ]


async def test_a_removed_hook_is_not_called_again(
    api: FakeCS2CapAPI, client: AccountClient, store: MemoryKeyStore
) -> None:
    """`after_step` returns a remover; after it, the rotation runs without the hook."""
    rotator = KeyRotator(client, store=store)
    seen: list[Step] = []

    async def note(step: Step) -> None:
        seen.append(step)

    remove = after_step(rotator, note)
    await rotator.rotate_now()
    remove()
    remove()  # twice is harmless
    await rotator.rotate_now()
    assert seen == ROOT_STEPS
    assert api.reissues == 2


def test_a_step_compares_equal_to_its_name() -> None:
    """A `Step` is its string value too, so hooks written for names keep working."""
    name: str = Step.SAVED
    assert name == "saved"
    assert Step("reissued") is Step.REISSUED
