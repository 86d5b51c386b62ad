"""Fixtures of the client tests (the top-level modules): mocked HTTP and a client.

Most unit tests pin the wire format: exact canned payloads (every field of a model, keys
echoed in error bodies, bodies of the wrong shape) and exactly what the client handed to
aiohttp (headers, query, body, `allow_redirects`), which aioresponses records. Tests of
behaviour (pacing, hooks) use the fake in-process (`fake` from tests/conftest.py). No
unit test opens a socket except tests/client/test_transport.py's raw servers, where the
socket is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock

from ._payloads import BASE_URL, ROOT_KEY


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    """Every aiohttp request is answered by what the test registered (else: refused)."""
    with aioresponses() as mocked:
        yield mocked


@pytest.fixture
async def client(clock: FakeClock) -> AsyncIterator[AccountClient]:
    """A client with the root key, virtual time and no client-side pacing."""
    async with AccountClient(
        ROOT_KEY, base_url=BASE_URL, clock=clock, requests_per_minute=0
    ) as account:
        yield account
