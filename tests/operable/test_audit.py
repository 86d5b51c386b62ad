"""The suite-wide leak audit reaches spans and metric expositions."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter
from reliability._hygiene import KeyAudit

from cs2cap_account import AccountClient
from cs2cap_account.metrics import instrument
from cs2cap_account.testing import FakeCS2CapAPI

from ._audit import audit_metrics


def _audit(request: pytest.FixtureRequest) -> KeyAudit:
    """The running test's suite-wide leak audit (the autouse fixture in tests/conftest.py)."""
    audit: KeyAudit = request.getfixturevalue("_no_key_leaks")
    return audit


async def test_a_key_in_a_span_attribute_is_caught(
    fake: FakeCS2CapAPI,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    request: pytest.FixtureRequest,
) -> None:
    """A span ended with a plaintext key in an attribute is reported by the audit."""
    audit = _audit(request)
    provider, _ = spans
    with provider.get_tracer("test").start_as_current_span("leaky") as span:
        span.set_attribute("oops", fake.root_key.reveal())
    leaks = audit.new_leaks()  # taken here, so this test passes
    assert [leak.where for leak in leaks] == ["the span 'leaky'"]


async def test_a_key_in_a_metric_label_is_caught(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    registry: CollectorRegistry,
    request: pytest.FixtureRequest,
) -> None:
    """A metric labelled with a plaintext key, in a registry `instrument()` used, is
    reported by the audit; the SDK's own metrics hold none.
    """
    audit = _audit(request)
    instrument(client=fake_client, registry=registry)
    await fake_client.get_key()
    audit_metrics(audit)
    assert audit.new_leaks() == []
    leaky = Counter("leaky", "a test's mistake", ["key"], registry=registry)
    leaky.labels(fake.root_key.reveal()).inc()
    audit_metrics(audit)
    leaks = audit.new_leaks()
    registry.unregister(leaky)  # so the audit at the end of the test passes
    assert [leak.where for leak in leaks] == ["a metrics exposition"]
