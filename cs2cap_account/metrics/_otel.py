"""OpenTelemetry traces for a rotator and a client (opentelemetry-api, extra `otel`).

A rotation is one span (`cs2cap.rotation`) with a child span per protocol step passed
(`cs2cap.rotation.journaled`, `.reissued`, `.saved`, `.verified`, `.children`,
`.announced`: each from the step before to this one). Every HTTP attempt is a span
(`GET /account/key`, kind CLIENT), a child of the rotation when a rotation makes it.
Attributes are the method, the route template, the status code, the rotation's reason
(from a fixed list) and the step: never a URL with its query, a header or a key.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

try:
    from opentelemetry import trace as _trace
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        'cs2cap_account.metrics.trace needs opentelemetry-api: pip install "cs2cap-account[otel]"'
    ) from exc

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import __version__
from cs2cap_account._transport import Response, Transport
from cs2cap_account.errors import APIConnectionError
from cs2cap_account.metrics._labels import reason_label, route_of
from cs2cap_account.rotation._rotator import KeyRotator
from cs2cap_account.rotation._steps import Step

__all__ = ["TracedTransport", "Tracing", "trace"]

_SCOPE: Final = "cs2cap_account"


@attrs.define
class _InRotation:
    """The rotation span of the task running it, and when its last step ended (ns)."""

    span: _trace.Span
    last_ns: int


_ROTATION: Final[contextvars.ContextVar[_InRotation | None]] = contextvars.ContextVar(
    "cs2cap_rotation_span", default=None
)


class TracedTransport:
    """A transport that makes a span of each attempt of the transport it wraps."""

    def __init__(self, inner: Transport, tracer: _trace.Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    @property
    def closed(self) -> bool:
        """Whether the wrapped transport is closed."""
        return self._inner.closed

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Send through the wrapped transport inside a CLIENT span."""
        route = route_of(url)
        # Not made current: nothing runs inside an attempt, and attaching a context costs.
        span = self._tracer.start_span(
            f"{method} {route}",
            kind=_trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.template": route},
            record_exception=False,
            set_status_on_exception=False,
        )
        try:
            response = await self._inner.send(
                method, url, headers=headers, params=params, body=body, timeout=timeout
            )
        except APIConnectionError as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(_trace.StatusCode.ERROR, type(exc).__name__)
            span.end()
            raise
        except BaseException:  # cancelled, or a transport's bug: the span still ends
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 400:
            span.set_attribute("error.type", str(response.status))
            span.set_status(_trace.StatusCode.ERROR)
        span.end()
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class Tracing:
    """What `trace()` set up: its tracer, for spans of your own around the SDK's."""

    def __init__(self, tracer: _trace.Tracer) -> None:
        self.tracer = tracer

    @contextlib.contextmanager
    def rotation(self, reason: str) -> Iterator[None]:
        """The span of one rotation (entered by the rotator around it)."""
        with self._tracer_span(reason) as span:
            token = _ROTATION.set(_InRotation(span, time.time_ns()))
            try:
                yield
            finally:
                _ROTATION.reset(token)

    def _tracer_span(self, reason: str) -> contextlib.AbstractContextManager[_trace.Span]:
        return self.tracer.start_as_current_span(
            "cs2cap.rotation",
            attributes={"cs2cap.rotation.reason": reason_label(reason)},
            record_exception=False,
        )

    async def passed(self, step: Step) -> None:
        """A step hook: the span of the step just passed, a child of its rotation's span."""
        current = _ROTATION.get()
        if current is None:  # a step finished by a catch-up, outside any rotation's span
            return
        now = time.time_ns()
        span = self.tracer.start_span(
            f"cs2cap.rotation.{step.value}",
            context=_trace.set_span_in_context(current.span),
            start_time=current.last_ns,
            attributes={"cs2cap.rotation.step": step.value},
        )
        span.end(end_time=now)
        current.last_ns = now


def trace(
    rotator: KeyRotator | None = None,
    client: AccountClient | None = None,
    tracer_provider: _trace.TracerProvider | None = None,
) -> Tracing:
    """Trace `rotator`'s rotations and steps, and `client`'s HTTP attempts.

    Spans go to `tracer_provider` (default: the global one OpenTelemetry is configured
    with). A failed rotation's span has status ERROR and the error's type; its message,
    which names key ids only, is the status description.
    """
    if rotator is not None and not isinstance(rotator, KeyRotator):
        raise TypeError(f"rotator must be a KeyRotator, not {type(rotator).__name__}")
    if client is not None and not isinstance(client, AccountClient):
        raise TypeError(f"client must be an AccountClient, not {type(client).__name__}")
    if rotator is None and client is None:
        raise ValueError("trace() needs a rotator, a client, or both")
    tracer = _trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
    tracing = Tracing(tracer)
    if rotator is not None:
        rotator._observer.around.append(tracing.rotation)
        rotator._steps.add(tracing.passed)
    if client is not None:
        shared = client._session.shared
        shared.transport = TracedTransport(shared.transport, tracer)
    return tracing
