"""Test doubles for rotation tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence

from cs2cap_account import (
    AccountClient,
    Hooks,
    KeyRecord,
    MemoryKeyStore,
    RequestEvent,
    ResponseEvent,
    StoreError,
)
from cs2cap_account.testing import FakeCS2CapAPI


class FlakyStore(MemoryKeyStore):
    """A memory store whose saves fail while `failing(record)` says so.

    `failures` counts refused saves; `saves` every save that went through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failing: Callable[[KeyRecord], bool] = lambda _record: False
        self.failing_after_save: Callable[[KeyRecord], bool] = lambda _record: False
        self.failures = 0
        self.saves: list[KeyRecord] = []

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Refuse like a full disk when `failing(record)`; save, then report a failure
        anyway (like a failed directory fsync) when `failing_after_save(record)`.
        """
        if self.failing(record):
            self.failures += 1
            raise StoreError("disk full (simulated)")
        await super().save(record, expected_generation=expected_generation)
        self.saves.append(record)
        if self.failing_after_save(record):
            self.failures += 1
            raise StoreError("fsync of the directory failed (simulated)")


def fail_times(count: int, when: Callable[[KeyRecord], bool]) -> Callable[[KeyRecord], bool]:
    """A `failing` predicate that refuses the first `count` saves matching `when`."""
    remaining = [count]

    def failing(record: KeyRecord) -> bool:
        if remaining[0] > 0 and when(record):
            remaining[0] -= 1
            return True
        return False

    return failing


def hooked_client(
    api: FakeCS2CapAPI,
    like: AccountClient,
    *,
    on_request: Sequence[Callable[[RequestEvent], object]] = (),
    on_response: Sequence[Callable[[ResponseEvent], object]] = (),
) -> AccountClient:
    """A client like `like` (same fake, same clock) with instrumentation hooks, which
    tests use to arm a fault at the exact step of the protocol they target.
    """
    return AccountClient(
        api.root_key,
        base_url=api.base_url,
        clock=like.clock,
        hooks=Hooks(on_request=on_request, on_response=on_response),
    )


class ManualClock:
    """A virtual clock that moves only when the test says so.

    Unlike `FakeClock`, whose every `sleep()` moves time on at once, a sleeper here waits
    until `advance()` has moved time past its wake-up: so a test can hold callers queued
    and prove that something else went ahead without any time passing.
    """

    def __init__(self) -> None:
        self._now = 1_000.0
        self._wall = dt.datetime.now(dt.timezone.utc)
        self._moved = asyncio.Event()

    def monotonic(self) -> float:
        """Virtual seconds."""
        return self._now

    def now(self) -> dt.datetime:
        """Virtual wall-clock time."""
        return self._wall + dt.timedelta(seconds=self._now - 1_000.0)

    async def sleep(self, seconds: float) -> None:
        """Return once time has been advanced `seconds` past now."""
        wake = self._now + max(0.0, seconds)
        while self._now < wake:
            await self._moved.wait()

    async def advance(self, seconds: float) -> None:
        """Move time on and let every sleeper due by then run."""
        self._now += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        for _ in range(50):
            await asyncio.sleep(0)
