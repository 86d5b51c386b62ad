"""Fixtures for the operability tests: a fake API in-process, a store, telemetry sinks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import attrs
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from cs2cap_account import AccountClient, FakeClock, MemoryKeyStore, SecretKey
from cs2cap_account.stores._record import successor
from cs2cap_account.testing import FakeCS2CapAPI

FAKE_BASE_URL = "https://fake.test/v1"


@pytest.fixture
def store() -> MemoryKeyStore:
    """An empty in-memory key store."""
    return MemoryKeyStore()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A Prometheus registry of the test's own."""
    return CollectorRegistry()


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider whose finished spans are kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def session_client(fake: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[AccountClient]:
    """A client holding only the fake's session JWT: how an operator mends a lost key."""
    async with AccountClient(
        session_token=fake.session_token,
        base_url=FAKE_BASE_URL,
        transport=fake.transport(clock=clock),
        clock=clock,
    ) as client:
        yield client


def never_issued() -> SecretKey:
    """A root key of the right shape that the fake never issued."""
    return SecretKey("sk_live_root_" + "7" * 24 + "XXXX")


async def put_new_key(
    store: MemoryKeyStore, session_client: AccountClient, clock: FakeClock
) -> str:
    """What an operator does after a halt: reissue with the session JWT, store the key
    (journal closed), and return its id.
    """
    record = await store.load()
    assert record is not None
    new = await session_client.reissue_key(use_new_key=False)
    fresh = attrs.evolve(successor(record, new.key, new.id, at=clock.now()), pending=None)
    await store.save(fresh, expected_generation=record.generation)
    return new.id
