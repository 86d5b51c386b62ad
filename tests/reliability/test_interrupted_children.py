"""A rotation that dies after creating a child key but before saving it.

The crash tests found it: killed in the middle of re-creating the child keys, the next
rotator created a second child of the same name, leaving an orphan (an active key whose
plaintext nobody has) behind. Replayed here in one process: the store's save of the first
re-created child "kills" the rotation.
"""

from __future__ import annotations

from collections import Counter

import pytest

from cs2cap_account import AccountClient, FakeClock, KeyRecord, KeyRotator, MemoryKeyStore
from cs2cap_account.testing import FakeCS2CapAPI


class Crash(BaseException):
    """The process dies here (not an Exception: nothing on the way may handle it)."""


class DyingStore(MemoryKeyStore):
    """A memory store that "crashes the process" instead of saving the first child key."""

    armed = True

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Die (once) on the first save that holds a re-created child key."""
        if self.armed and record.sub_keys:
            self.armed = False
            raise Crash
        await super().save(record, expected_generation=expected_generation)


async def _children(api: FakeCS2CapAPI) -> Counter[str | None]:
    async with AccountClient(session_token=api.session_token, base_url=api.base_url) as admin:
        return Counter([detail.key.name async for detail in admin.sub_keys.iterate()])


async def test_a_child_created_but_not_saved_is_reissued_not_duplicated(
    api: FakeCS2CapAPI, client: AccountClient, clock: FakeClock
) -> None:
    """After the crash, the next rotator finishes the rotation: each child exists once,
    under the new root, and the key the store holds for it works. The orphan's first
    plaintext (lost with the crash) no longer does.
    """
    for name in ("bot", "dashboard"):
        api.add_child_key(name)
    store = DyingStore()
    first = KeyRotator(client, store=store, recreate_sub_keys=True)
    await first.check()
    with pytest.raises(Crash):
        await first.rotate_now()
    assert await _children(api) == Counter({"bot": 1})  # created, then the process died
    record = await store.load()
    assert record is not None
    assert (record.generation, record.sub_keys) == (2, {})

    async with AccountClient(record.key, base_url=api.base_url, clock=clock) as restarted:
        event = await KeyRotator(restarted, store=store, recreate_sub_keys=True).check()

    assert event is not None
    assert sorted(event.sub_keys) == ["bot", "dashboard"]
    assert event.sub_key_errors == {}
    assert await _children(api) == Counter({"bot": 1, "dashboard": 1})
    record = await store.load()
    assert record is not None
    assert record.pending is None
    assert sorted(record.sub_keys) == ["bot", "dashboard"]
    assert all(api.is_active(entry.key) for entry in record.sub_keys.values())
    assert api.reissues == 1
