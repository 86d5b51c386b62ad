"""The rotator's writes to its store: compare-and-set saves, retried while it makes sense.

A transient `StoreError` is retried with backoff; a fenced save (`StaleGenerationError`:
the store moved to another generation) is not, except where the write means "add this
to whatever is stored" (`keep_aside`).
"""

from __future__ import annotations

from typing import Final

import attrs

from cs2cap_account._clock import Clock
from cs2cap_account._retry import retry_on, retry_on_unless, retrying
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import RotationError, StaleGenerationError, StoreError
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import KeyRecord

__all__ = ["STORE_ATTEMPTS", "StoreIO"]

STORE_ATTEMPTS: Final = 5

# A store error may pass; a fenced save (a newer generation is stored) never will.
_TRANSIENT: Final = retry_on_unless(StoreError, StaleGenerationError)


@attrs.frozen
class StoreIO:
    """Loads and saves through `store`, backing off on `clock`."""

    store: KeyStore
    clock: Clock

    async def load(self) -> KeyRecord | None:
        """The stored record, or None."""
        return await self.store.load()

    async def load_existing(self) -> KeyRecord:
        """The stored record; a `RotationError` if the store was emptied meanwhile."""
        record = await self.store.load()
        if record is None:
            raise RotationError("the key store is empty; it was cleared during a rotation")
        return record

    async def write(self, record: KeyRecord, expected: int | None) -> KeyRecord:
        """Save `record` if the store is at generation `expected`; retry transient errors.

        A retried save can find its own earlier attempt stored (that attempt failed only in
        reporting success): that counts as done, not as being fenced off.
        """
        try:
            async for attempt in retrying(
                attempts=STORE_ATTEMPTS, clock=self.clock, retry=_TRANSIENT
            ):
                with attempt:
                    await self.store.save(record, expected_generation=expected)
        except StaleGenerationError:
            if await self.store.load() != record:
                raise
        return record

    async def close_journal(self, record: KeyRecord) -> KeyRecord:
        """Save `record` without its journal, at its own generation."""
        return await self.write(attrs.evolve(record, pending=None), record.generation)

    async def keep_aside(self, key: SecretKey) -> None:
        """Add `key` to the stored record's kept-aside keys, at whatever generation it is.

        Fenced saves reload and try again, transient errors back off; bounded both ways.
        """
        async for attempt in retrying(
            attempts=2 * STORE_ATTEMPTS, clock=self.clock, retry=retry_on(StoreError)
        ):
            with attempt:
                latest = await self.load_existing()
                if key not in latest.kept_aside:
                    await self.store.save(
                        attrs.evolve(latest, kept_aside=(*latest.kept_aside, key)),
                        expected_generation=latest.generation,
                    )
