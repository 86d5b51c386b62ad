"""`MemoryKeyStore`: a store for one process, and for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cs2cap_account.errors import StaleGenerationError
from cs2cap_account.stores._record import KeyRecord, dump_record

__all__ = ["MemoryKeyStore", "check_generation", "check_lineage"]


def check_generation(stored: KeyRecord | None, expected: int | None, *, where: str) -> None:
    """Raise `StaleGenerationError` unless `stored` is at generation `expected`."""
    actual = None if stored is None else stored.generation
    if actual != expected:
        raise StaleGenerationError(
            f"{where} holds generation {actual}, not {expected}: another rotator saved first",
            expected_generation=-1 if expected is None else expected,
            stored_generation=-1 if actual is None else actual,
        )


def check_lineage(stored: KeyRecord | None, record: KeyRecord, *, where: str) -> None:
    """Raise `StaleGenerationError` if `stored` is of another lineage than `record`.

    A matching generation number is not enough for a compare-and-set: a store reset and
    written again since repeats generation numbers, under a new lineage.
    """
    if stored is not None and stored.lineage != record.lineage:
        raise StaleGenerationError(
            f"{where} holds generation {stored.generation} of another lineage: it was reset since",
            expected_generation=record.generation - 1,
            stored_generation=stored.generation,
        )


class MemoryKeyStore:
    """Keeps the record in memory: nothing survives the process. For one process only."""

    def __init__(self, record: KeyRecord | None = None) -> None:
        self._record = record
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        record = getattr(self, "_record", None)
        generation = None if record is None else record.generation
        return f"MemoryKeyStore(generation={generation})"

    async def load(self) -> KeyRecord | None:
        """The stored record, or None."""
        return self._record

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Compare-and-set on the generation.

        A record the other stores could not write (a field of the wrong type) is refused
        here too, with the same `StoreError`, so a test on this store finds it.
        """
        dump_record(record)
        check_generation(self._record, expected_generation, where="the memory store")
        check_lineage(self._record, record, where="the memory store")
        self._record = record

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Serialise rotations within this process."""
        async with self._lock:
            yield

    async def aclose(self) -> None:
        """Nothing to release."""
