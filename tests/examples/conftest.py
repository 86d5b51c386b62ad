"""Fixtures for the examples' tests: a fake API, a client, and one virtual clock for both."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from cs2cap_account import AccountClient, FakeClock, Hooks, ResponseEvent
from cs2cap_account.testing import FakeCS2CapAPI


@pytest.fixture
def clock() -> FakeClock:
    """Virtual time, starting now, shared by the fake, the client and the rotator."""
    return FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeCS2CapAPI]:
    """A running quant-tier fake whose rate windows and timestamps follow `clock`."""
    async with FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as fake:
        yield fake


@pytest.fixture
def responses() -> list[ResponseEvent]:
    """Every response `client` (or a `with_options` copy of it) received, in order."""
    return []


@pytest.fixture
async def client(
    api: FakeCS2CapAPI, clock: FakeClock, responses: list[ResponseEvent]
) -> AsyncIterator[AccountClient]:
    """A client holding the fake's root key, waiting on `clock`, recording `responses`."""
    hooks = Hooks(on_response=[responses.append])
    async with AccountClient(api.root_key, base_url=api.base_url, clock=clock, hooks=hooks) as c:
        yield c
