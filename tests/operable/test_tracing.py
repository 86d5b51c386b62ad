"""OpenTelemetry spans, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import itertools

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationError
from cs2cap_account.metrics import trace
from cs2cap_account.metrics._otel import TracedTransport
from cs2cap_account.testing import FakeCS2CapAPI

STEPS = ["journaled", "reissued", "saved", "verified", "children", "announced"]


async def test_a_rotation_is_a_span_with_a_child_per_step_and_per_request(
    fake_client: AccountClient,
    store: MemoryKeyStore,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """One `cs2cap.rotation` span (reason attribute); one child span per step, in order,
    back to back; each HTTP attempt of the rotation a CLIENT child span, with the method,
    the route template and the status code.
    """
    provider, exporter = spans
    rotator = KeyRotator(fake_client, store=store)
    trace(rotator=rotator, client=fake_client, tracer_provider=provider)
    await rotator.check()
    exporter.clear()
    await rotator.rotate_now()
    finished = exporter.get_finished_spans()
    (rotation,) = [span for span in finished if span.name == "cs2cap.rotation"]
    assert rotation.attributes == {"cs2cap.rotation.reason": "manual"}
    assert rotation.context is not None
    children = [
        span
        for span in finished
        if span.parent is not None and span.parent.span_id == rotation.context.span_id
    ]
    steps = [span for span in children if span.name.startswith("cs2cap.rotation.")]
    assert [span.name.removeprefix("cs2cap.rotation.") for span in steps] == STEPS
    for before, after in itertools.pairwise(steps):
        assert before.end_time == after.start_time
    requests = [span for span in children if span.kind is SpanKind.CLIENT]
    assert {span.name for span in requests} == {"GET /account/key", "POST /account/key/reissue"}
    reissue = next(span for span in requests if span.name == "POST /account/key/reissue")
    assert reissue.attributes == {
        "http.request.method": "POST",
        "url.template": "/account/key/reissue",
        "http.response.status_code": 200,
    }


async def test_a_failed_rotation_span_has_status_error(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    store: MemoryKeyStore,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A refused reissue: the rotation span is ERROR, and so is the 403 request's span."""
    provider, exporter = spans
    rotator = KeyRotator(fake_client, store=store)
    trace(rotator=rotator, client=fake_client, tracer_provider=provider)
    fake.faults.fail("reissue_key", status=403, code="EMAIL_NOT_VERIFIED")
    with pytest.raises(RotationError):
        await rotator.rotate_now()
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    assert by_name["cs2cap.rotation"].status.status_code is StatusCode.ERROR
    refused = by_name["POST /account/key/reissue"]
    assert refused.status.status_code is StatusCode.ERROR
    assert refused.attributes is not None and refused.attributes["error.type"] == "403"


async def test_a_connection_failure_is_an_error_span(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A dropped request: its span names the error type; the client still works after."""
    provider, exporter = spans
    trace(client=fake_client, tracer_provider=provider)
    fake.faults.drop("get_key", times=2)  # aiohttp resends a dropped GET once itself
    await fake_client.get_key()  # retried
    first, second = exporter.get_finished_spans()
    assert first.attributes is not None and first.attributes["error.type"] == "APIConnectionError"
    assert second.status.status_code is StatusCode.UNSET
    transport = fake_client._session.shared.transport
    assert isinstance(transport, TracedTransport) and not transport.closed


async def test_trace_validates_its_arguments(fake_client: AccountClient) -> None:
    """Wrong types and an empty call are refused at the boundary."""
    with pytest.raises(ValueError, match="needs a rotator"):
        trace()
    with pytest.raises(TypeError):
        trace(rotator=fake_client)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        trace(client="client")  # type: ignore[arg-type]


async def test_steps_finished_by_a_catch_up_make_no_orphan_spans(
    fake: FakeCS2CapAPI,
    fake_client: AccountClient,
    store: MemoryKeyStore,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A rotation stopped after its save is finished by the next check (a catch-up, not a
    rotation): its steps make no step spans outside a rotation's span.
    """
    from cs2cap_account.testing import after_step

    provider, exporter = spans
    rotator = KeyRotator(fake_client, store=store)
    trace(rotator=rotator, tracer_provider=provider)

    class Stop(Exception):
        pass

    async def stop_after_save(step: object) -> None:
        if step == "saved":
            raise Stop

    remove = after_step(rotator, stop_after_save)
    try:
        with pytest.raises(Stop):
            await rotator.rotate_now()
    finally:
        remove()
    exporter.clear()
    event = await rotator.check()
    assert event is not None and event.generation == 2
    assert exporter.get_finished_spans() == ()
