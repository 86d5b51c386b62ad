"""The `KeyStore` protocol: what the rotator needs of any place it keeps the key."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from cs2cap_account.stores._record import KeyRecord

__all__ = ["KeyStore"]


@runtime_checkable
class KeyStore(Protocol):
    """Durable home of the current root key, shared by every process that uses it.

    - `load()` returns the stored `KeyRecord`, or None if nothing was stored yet.
    - `save(record, expected_generation=g)` is a compare-and-set: it writes only if the
      stored record's generation is `g` (None: only if the store is empty), and raises
      `StaleGenerationError` otherwise. A save is durable when it returns.
    - `lock()` is held around a whole rotation; it serialises rotations across every
      process (and host, for a shared store) using the same store.
    - `aclose()` releases connections and files.

    A store may also offer `changes()`, an async iterator yielding the stored generation
    whenever it may have changed (a hint: a broadcast, or a poll); a running rotator then
    follows other processes' rotations at once instead of at its next check.
    """

    async def load(self) -> KeyRecord | None:
        """The stored record, or None."""

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Write `record` if the stored generation is `expected_generation`."""

    def lock(self) -> AbstractAsyncContextManager[None]:
        """An exclusive lock over rotations of this store's key."""

    async def aclose(self) -> None:
        """Release what the store holds open."""
