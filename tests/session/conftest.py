"""Fixtures for the session-layer tests: a virtual clock, the fake in-process, mocked HTTP
and a loopback server.

The fake (`fake`, from tests/conftest.py) behind a `Recorder` (`wire`) is the default
double; `mocked` (aioresponses) and `server` (a scripted loopback server) stay for the
tests that need what the fake cannot provoke: aiohttp's own exceptions, a refused or
timed-out connect, or a real socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import API_KEY, Recorder, ScriptedServer

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
def wire(fake: FakeCS2CapAPI, clock: FakeClock) -> Recorder:
    """`fake`'s in-process transport, noting each request on the virtual clock."""
    return Recorder(fake.transport(clock=clock), clock)


@pytest.fixture
async def make_fake_client(
    fake: FakeCS2CapAPI, wire: Recorder, make_client: MakeClient
) -> MakeClient:
    """Build clients of `fake` (root key, virtual clock), each with its own in-process
    transport noting into `wire.seen`; closes them.
    """

    def make(**kwargs: Any) -> AccountClient:
        if "session_token" not in kwargs:
            kwargs.setdefault("api_key", fake.root_key)
        kwargs.setdefault("transport", wire.fork(fake.transport(clock=wire.clock)))
        kwargs.setdefault("base_url", "https://fake.test/v1")
        return make_client(**kwargs)

    return make


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[ScriptedServer]:
    """A started scripted loopback server that timestamps requests with the virtual clock."""
    srv = ScriptedServer(clock)
    await srv.start()
    yield srv
    await srv.close()
