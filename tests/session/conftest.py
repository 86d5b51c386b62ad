"""Fixtures for the session-layer tests: a virtual clock, mocked HTTP, a loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock

from ._support import API_KEY, ScriptedServer

MOCK_BASE = "https://api.test/v1"

MakeClient = Callable[..., AccountClient]


@pytest.fixture
def clock() -> FakeClock:
    """A virtual clock: every wait returns at once and is recorded in `clock.sleeps`."""
    return FakeClock()


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """Every aiohttp request answered by aioresponses."""
    with aioresponses() as mock:
        yield mock


@pytest.fixture
async def make_client(clock: FakeClock) -> AsyncIterator[MakeClient]:
    """Build `AccountClient`s on the virtual clock (mocked base URL by default); closes them."""
    made: list[AccountClient] = []

    def make(**kwargs: Any) -> AccountClient:
        kwargs.setdefault("base_url", MOCK_BASE)
        if "session_token" not in kwargs:
            kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("clock", clock)
        client = AccountClient(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[ScriptedServer]:
    """A started scripted loopback server that timestamps requests with the virtual clock."""
    srv = ScriptedServer(clock)
    await srv.start()
    yield srv
    await srv.close()
