"""The leak audit's reach into telemetry: metric expositions and finished spans.

Used by the suite-wide audit (`tests/conftest.py`): every span ended during a test
(OpenTelemetry's SDK, when it is loaded) and, at the end of each test, the exposition of
every registry `cs2cap_account.metrics.instrument()` used is checked for plaintext keys. Neither
library is imported here: a test run without them audits nothing more.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from reliability._hygiene import KeyAudit

__all__ = ["audit_metrics", "audit_spans", "span_text"]


def span_text(span: Any) -> str:
    """Everything an exporter sends of `span`: name, attributes, status, events, links."""
    parts = [str(span.name), repr(dict(span.attributes or {}))]
    status = getattr(span, "status", None)
    if status is not None and status.description:
        parts.append(status.description)
    for event in getattr(span, "events", ()) or ():
        parts += [str(event.name), repr(dict(event.attributes or {}))]
    for link in getattr(span, "links", ()) or ():
        parts.append(repr(dict(link.attributes or {})))
    return "\n".join(parts)


def audit_spans(audit: KeyAudit, patch: pytest.MonkeyPatch) -> None:
    """Check each span the SDK ends from now on (if the SDK is loaded)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")
    if sdk is None:
        return
    original = sdk.Span.end

    def end(self: Any, end_time: int | None = None) -> None:
        original(self, end_time)
        audit.check(span_text(self), f"the span {self.name!r}")

    patch.setattr(sdk.Span, "end", end)


def audit_metrics(audit: KeyAudit) -> None:
    """Check the exposition of every registry `instrument()` used (if it was ever called)."""
    prometheus = sys.modules.get("cs2cap_account.metrics._prometheus")
    if prometheus is None:
        return
    from prometheus_client import generate_latest

    for registry in prometheus.live_registries():
        audit.check(generate_latest(registry).decode(), "a metrics exposition")
