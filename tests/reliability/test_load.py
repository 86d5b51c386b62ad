"""Load: many calls at high concurrency against the fake, 5 % of them failing with 5xx.

No unclosed session or connector (the project's pytest configuration turns every
`ResourceWarning` into an error; checked here too), no task left pending, and memory flat:
after a warm-up, the calls allocate nothing that stays (tracemalloc, within 2 MiB).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import time
import tracemalloc
import warnings
from collections import Counter
from typing import Final

import aiohttp
import pytest

from cs2cap_account import AccountClient, CS2CapError
from cs2cap_account.testing import FakeCS2CapAPI

from ._chaos import quiet_pytest_log_capture
from ._profile import PROFILE, STATS

WARM_UP: Final = 1_000
MAX_GROWTH: Final = 2 * 1024 * 1024  # bytes
SEED: Final = 5


class VirtualClock:
    """Time for the client: backoff waits pass at once, and nothing is recorded."""

    def __init__(self) -> None:
        self._elapsed = 0.0

    def monotonic(self) -> float:
        """Virtual seconds."""
        return self._elapsed

    def now(self) -> dt.datetime:
        """A fixed wall clock moved by the virtual seconds."""
        return dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=self._elapsed)

    async def sleep(self, seconds: float) -> None:
        """Advance instead of waiting."""
        self._elapsed += max(0.0, seconds)
        await asyncio.sleep(0)


class Complaints(logging.Handler):
    """Keeps what asyncio and aiohttp log at WARNING and up (e.g. "Unclosed client session")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


async def _calls(
    client: AccountClient, count: int, concurrency: int, outcomes: Counter[str]
) -> None:
    """`count` calls from `concurrency` tasks, alternating two GET routes."""
    per_task, extra = divmod(count, concurrency)

    async def worker(calls: int, turn: int) -> None:
        for n in range(calls):
            try:
                if (turn + n) % 4:
                    await client.get_key()
                else:
                    await client.sub_keys.list(limit=5)
                outcomes["ok"] += 1
            except CS2CapError as exc:
                outcomes[type(exc).__name__] += 1

    await asyncio.gather(*(worker(per_task + (i < extra), i) for i in range(concurrency)))


def _others() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_calls_under_load_leak_nothing(request: pytest.FixtureRequest) -> None:
    """`PROFILE.load_calls` calls at `PROFILE.load_concurrency` concurrency, 5 % 503/502/500:
    every call succeeds (retried), memory grows by less than 2 MiB after the warm-up, no
    ResourceWarning or "Unclosed" complaint appears, and no task is left once closed.
    """
    assert "error::ResourceWarning" in request.config.getini("filterwarnings")
    complaints = Complaints()
    for name in ("asyncio", "aiohttp"):
        logging.getLogger(name).addHandler(complaints)
    outcomes: Counter[str] = Counter()
    try:
        with warnings.catch_warnings(record=True) as caught, quiet_pytest_log_capture():
            warnings.simplefilter("always")
            # A tiny rate window: with limits off, the fake still counts calls per window.
            async with FakeCS2CapAPI(rate_limits=False, rate_window=0.01) as api:
                api.faults.chaos(seed=SEED, error=0.05)
                async with AccountClient(
                    api.root_key,
                    base_url=api.base_url,
                    requests_per_minute=0,
                    max_retries=4,
                    timeout=30.0,
                    clock=VirtualClock(),
                ) as client:
                    # Traced from before the warm-up: objects the warm-up made and the
                    # run replaces would otherwise count as growth without their release.
                    tracemalloc.start()
                    try:
                        await _calls(client, WARM_UP, PROFILE.load_concurrency, outcomes)
                        gc.collect()
                        baseline = tracemalloc.get_traced_memory()[0]
                        started = time.perf_counter()
                        await _calls(client, PROFILE.load_calls, PROFILE.load_concurrency, outcomes)
                        elapsed = time.perf_counter() - started
                        gc.collect()
                        current, peak = tracemalloc.get_traced_memory()
                        growth = current - baseline
                    finally:
                        tracemalloc.stop()
                injected = dict(api.faults.injected)
            for _ in range(100):  # the server's connection tasks wind down
                if not _others():
                    break
                await asyncio.sleep(0.01)
            left = _others()
            gc.collect()
    finally:
        for name in ("asyncio", "aiohttp"):
            logging.getLogger(name).removeHandler(complaints)

    calls = WARM_UP + PROFILE.load_calls
    STATS.load.append(
        f"load: {PROFILE.load_calls} calls at concurrency {PROFILE.load_concurrency} in "
        f"{elapsed:.1f} s ({PROFILE.load_calls / elapsed:.0f}/s, under tracemalloc), "
        f"5xx injected {injected.get('error', 0)} times; memory growth after warm-up "
        f"{growth / 1024:+.0f} KiB (traced: {baseline / 1024:.0f} KiB after the warm-up, peak "
        f"{peak / 1024:.0f} KiB)"
    )
    assert outcomes == Counter({"ok": calls}), outcomes
    assert injected.get("error", 0) > calls * 0.03, injected
    assert growth < MAX_GROWTH, f"memory grew by {growth} bytes"
    resource = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert resource == []
    assert [line for line in complaints.lines if "nclosed" in line] == []
    assert left == set(), left


async def test_an_unclosed_session_would_be_caught() -> None:
    """The check above can fail: aiohttp warns (ResourceWarning) about a session that is
    dropped unclosed, which the project's configuration makes an error.
    """
    with pytest.warns(ResourceWarning, match="Unclosed client session"):
        _drop_an_unclosed_session()


def _drop_an_unclosed_session() -> None:
    session = aiohttp.ClientSession()
    del session  # without close()
    gc.collect()
