"""Fixtures for the fake's own tests: fakes on the virtual `clock`, and a plain HTTP client.

The fake is reached in-process (`http`) unless a test is about the wire (`tcp_http`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cs2cap_account import FakeClock
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http, MakeFake


@pytest.fixture
async def make_fake(clock: FakeClock) -> AsyncIterator[MakeFake]:
    """Make fakes on the test's clock with any constructor arguments; stop any started.

    `start=True` starts the fake on a loopback port; otherwise reach it in-process.
    """
    started: list[FakeCS2CapAPI] = []

    async def make(*, start: bool = False, **kwargs: Any) -> FakeCS2CapAPI:
        kwargs.setdefault("clock", clock.monotonic)
        kwargs.setdefault("wall_clock", clock.now)
        api = FakeCS2CapAPI(**kwargs)
        started.append(api)
        if start:
            await api.start()
        return api

    yield make
    for api in started:
        await api.close()


@pytest.fixture
async def api(make_fake: MakeFake) -> FakeCS2CapAPI:
    """A quant-tier fake on the test's clock (not started: `tcp_http` starts it)."""
    return await make_fake()


@pytest.fixture
async def http(api: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[Http]:
    """A plain HTTP client for `api`, in-process (delays on the virtual clock)."""
    async with Http.open(api, clock=clock) as client:
        yield client


@pytest.fixture
async def tcp_http(api: FakeCS2CapAPI) -> AsyncIterator[Http]:
    """A plain aiohttp client for `api` over TCP (the fake is started for it)."""
    async with Http.open(api, tcp=True) as client:
        yield client
