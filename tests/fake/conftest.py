"""Fixtures for the fake's own tests: fakes on the virtual `clock`, and a plain HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cs2cap_account import FakeClock
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http, MakeFake


@pytest.fixture
async def make_fake(clock: FakeClock) -> AsyncIterator[MakeFake]:
    """Start fakes on the test's clock with any constructor arguments; stop them after."""
    started: list[FakeCS2CapAPI] = []

    async def make(**kwargs: Any) -> FakeCS2CapAPI:
        kwargs.setdefault("clock", clock.monotonic)
        kwargs.setdefault("wall_clock", clock.now)
        api = FakeCS2CapAPI(**kwargs)
        await api.start()
        started.append(api)
        return api

    yield make
    for api in started:
        await api.close()


@pytest.fixture
async def api(make_fake: MakeFake) -> FakeCS2CapAPI:
    """A running quant-tier fake on the test's clock."""
    return await make_fake()


@pytest.fixture
async def http(api: FakeCS2CapAPI) -> AsyncIterator[Http]:
    """A plain aiohttp client for `api`."""
    async with Http.open(api) as client:
        yield client
