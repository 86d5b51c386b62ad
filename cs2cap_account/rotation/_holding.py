"""What this process holds of the key: the client's key, its stored generation and id.

`Holding` is the rotator's only mutable view of the key, shared by its rooms: which
record the client's key comes from, what was announced, a key held only in memory, a
halt. `held()` is the frozen snapshot the journal's decisions take.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import RotationError
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._journal import Held, UnsavedKey
from cs2cap_account.stores._record import KeyRecord, StoredSubKey

__all__ = ["Holding"]


@attrs.define
class Holding:
    """The key this process holds and what it knows about it; switches the client.

    `generation`, `key_id` and `lineage` are those of the stored record the client's key
    comes from (0 and None before the first look); `announced` the key ids announced here.
    `halted` is the error a lost key with no way to recover it left; `unsaved` a reissued
    key the store could not take yet. `children` are the child keys this process knows,
    by name, as the store held them (those of a root key come with it; a later one
    stored under a name is news, announced as a child rotation).
    """

    _client: AccountClient
    generation: int = 0
    key_id: str | None = None
    lineage: str | None = None
    announced: set[str] = attrs.field(factory=set)
    halted: RotationError | None = None
    unsaved: UnsavedKey | None = None
    last_event: RotationEvent | None = None
    children: dict[str, StoredSubKey] = attrs.field(factory=dict)
    _switched: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def key(self) -> SecretKey:
        """The root key the client sends now."""
        key = self._client.api_key
        assert key is not None
        return key

    def sends(self, record: KeyRecord | None) -> bool:
        """Whether the client sends the key `record` holds."""
        return record is not None and record.key == self._client.api_key

    def held(self) -> Held:
        """A frozen snapshot, for the journal's decisions."""
        return Held(
            generation=self.generation,
            key_id=self.key_id,
            lineage=self.lineage,
            announced=frozenset(self.announced),
            unsaved=self.unsaved,
            halted=self.halted is not None,
        )

    def hold(self, record: KeyRecord) -> None:
        """Send `record`'s key from now on, and remember its generation and id.

        A halt concerns the key held when it was raised: holding another one lifts it.
        """
        if record.key_id != self.key_id:
            self.halted = None
            self.know_children(record)  # another root key: its children come with it
        self._switch(record.key)
        self.generation = record.generation
        self.key_id = record.key_id
        self.lineage = record.lineage
        if self.unsaved is not None and self.unsaved.record.key_id == record.key_id:
            self.unsaved = None  # it is stored now

    def know_children(self, record: KeyRecord) -> None:
        """Take the child keys `record` holds as known here (none of them is news)."""
        self.children = dict(record.sub_keys)

    def hold_unsaved(self, unsaved: UnsavedKey) -> None:
        """Send a key the store could not take; it is saved at the next look."""
        self._switch(unsaved.record.key)
        self.unsaved = unsaved

    async def switched_or(self, rotation: asyncio.Future[Any]) -> None:
        """Wait until the client's key changes, or `rotation` ends, whichever is first."""
        switched = asyncio.ensure_future(self._switched.wait())
        try:
            await asyncio.wait({rotation, switched}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            switched.cancel()

    def _switch(self, key: SecretKey) -> None:
        if key != self._client.api_key:
            self._client.use_key(key)
            self._switched.set()
            self._switched = asyncio.Event()
