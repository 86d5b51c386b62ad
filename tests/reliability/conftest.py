"""Reliability tests: a fake and a client on virtual time; a summary of what they counted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cs2cap_account import AccountClient, FakeClock
from cs2cap_account.testing import FakeCS2CapAPI

from ._profile import PROFILE, STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the soak, crash, fuzz, load and secret-hygiene numbers of this run."""
    lines = STATS.lines()
    if lines:
        terminalreporter.section(f"reliability ({PROFILE.name} profile)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeCS2CapAPI]:
    """A running fake whose rate windows and timestamps follow the test's `clock`."""
    async with FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as fake:
        yield fake


@pytest.fixture
async def client(api: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[AccountClient]:
    """A client holding the fake's root key, on the test's `clock`."""
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock) as c:
        yield c
