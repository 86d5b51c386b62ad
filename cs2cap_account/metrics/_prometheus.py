"""Prometheus metrics for a rotator and a client (prometheus-client, extra `prometheus`).

The rotator's state (key age, generation, due time, halt, recoveries) is read at each
scrape; its events (rotations, failures, callback and sink failures) are counted as they
are announced. A client's requests are counted through its hooks (`on_response`,
`on_retry`): a few dictionary look-ups per attempt, measured in `nox -s bench`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Final

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client import generate_latest as _generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "cs2cap_account.metrics.instrument needs prometheus-client: "
        'pip install "cs2cap-account[prometheus]"'
    ) from exc

from cs2cap_account._client import AccountClient
from cs2cap_account._session import Hooks, ResponseEvent, RetryEvent
from cs2cap_account.metrics._labels import (
    CHILD_REASONS,
    REASONS,
    child_reason_label,
    reason_label,
    route_of,
)
from cs2cap_account.rotation._event import ChildRotationEvent, RotationEvent
from cs2cap_account.rotation._failure import (
    FailureEvent,
    RotationFailed,
    RotationHalted,
    RotationStage,
)
from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["Metrics", "instrument", "live_registries"]

_PREFIX: Final = "cs2cap"
_LIVE: Final[weakref.WeakSet[CollectorRegistry]] = weakref.WeakSet()


def live_registries() -> list[CollectorRegistry]:
    """Every registry `instrument()` registered with, still alive.

    The test suite audits their exposition for keys.
    """
    return list(_LIVE)


class _RotatorCollector(Collector):
    """The rotator's state, read at each scrape."""

    def __init__(self, rotator: KeyRotator) -> None:
        self._rotator = rotator

    def collect(self) -> Iterator[Any]:
        gauges = self._rotator._observer.gauges()
        yield _gauge("key_age_seconds", "Age of the root key in force, on the server's clock.",
                     gauges.key_age_seconds)  # fmt: skip
        yield _gauge("key_generation", "Store generation of the root key in force.",
                     gauges.generation)  # fmt: skip
        yield _gauge("last_rotation_timestamp_seconds",
                     "When the last new key announced in this process was saved (Unix time).",
                     gauges.last_rotation_at)  # fmt: skip
        yield _gauge("next_rotation_due_timestamp_seconds",
                     "When the schedule rotates the key in force (Unix time).",
                     gauges.next_due_at)  # fmt: skip
        yield _gauge("rotator_halted",
                     "1 while the rotator is halted (a key lost, no recovery token).",
                     int(gauges.halted))  # fmt: skip
        recoveries = CounterMetricFamily(
            f"{_PREFIX}_recoveries", "Lost keys replaced with the recovery token."
        )
        recoveries.add_metric([], gauges.recoveries)
        yield recoveries


class _ClientCollector(Collector):
    """The rate limit the server last reported, read at each scrape."""

    def __init__(self, client: AccountClient) -> None:
        self._client = client

    def collect(self) -> Iterator[Any]:
        info = self._client.rate_limit
        yield _gauge("rate_limit_remaining",
                     "Requests left in the rate-limit window, as the server last reported.",
                     None if info is None else info.remaining)  # fmt: skip
        yield _gauge("rate_limit_limit", "The rate limit the server last reported.",
                     None if info is None else info.limit)  # fmt: skip


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{_PREFIX}_{name}", documentation)
    if value is not None:
        family.add_metric([], value)
    return family


class Metrics:
    """The metrics `instrument()` registered, in `registry`.

    `exposition()` renders them in the Prometheus text format, as `/metrics` serves them.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        _LIVE.add(registry)

    def exposition(self) -> bytes:
        """Everything in `registry`, in the Prometheus text exposition format."""
        return _generate_latest(self.registry)

    def __repr__(self) -> str:
        return f"Metrics(registry={self.registry!r})"


class _RotatorMetrics:
    """Counters of what a rotator announces."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rotations = Counter(
            f"{_PREFIX}_rotations", "New root keys announced, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.failures = Counter(
            f"{_PREFIX}_rotation_failures", "Failed checks and rotations, by stage.", ["stage"],
            registry=registry,
        )  # fmt: skip
        self.callback_failures = Counter(
            f"{_PREFIX}_callback_failures", "Rotation callbacks that failed every try.",
            registry=registry,
        )  # fmt: skip
        self.sink_failures = Counter(
            f"{_PREFIX}_sink_failures", "Sinks that could not take a new key.", registry=registry
        )
        self.halts = Counter(
            f"{_PREFIX}_rotation_halts", "Times the rotator halted.", registry=registry
        )
        self.child_rotations = Counter(
            f"{_PREFIX}_child_rotations", "New child keys announced, rotated on their own.",
            ["reason"], registry=registry,
        )  # fmt: skip
        for reason in REASONS:
            self.rotations.labels(reason)
        for reason in CHILD_REASONS:
            self.child_rotations.labels(reason)
        for stage in RotationStage:
            self.failures.labels(stage.value)

    def watch(self, event: RotationEvent | ChildRotationEvent | FailureEvent) -> None:
        if isinstance(event, RotationEvent):
            self.rotated(event)
        elif isinstance(event, ChildRotationEvent):
            self.child_rotations.labels(child_reason_label(event.reason)).inc()
            self.callback_failures.inc(len(event.callback_errors))
            self.sink_failures.inc(len(event.sink_errors))
        else:
            self.troubled(event)

    def rotated(self, event: RotationEvent) -> None:
        self.rotations.labels(reason_label(event.reason)).inc()
        if event.callback_errors:
            self.callback_failures.inc(len(event.callback_errors))
        sink_errors = getattr(event, "sink_errors", ())
        if sink_errors:
            self.sink_failures.inc(len(sink_errors))

    def troubled(self, event: FailureEvent) -> None:
        if isinstance(event, RotationFailed):
            self.failures.labels(event.stage.value).inc()
        elif isinstance(event, RotationHalted):
            self.halts.inc()


class _ClientMetrics:
    """Counters and the duration histogram of a client's requests, fed by its hooks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            f"{_PREFIX}_requests", "HTTP attempts that got a response, by route and status.",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self._duration = Histogram(
            f"{_PREFIX}_request_duration_seconds", "Time to an HTTP response, by route.",
            ["method", "route"], registry=registry,
        )  # fmt: skip
        self._retries = Counter(
            f"{_PREFIX}_retries", "Requests retried, by route.", ["method", "route"],
            registry=registry,
        )  # fmt: skip
        # Label children by (method, path, status): a dictionary look-up per attempt.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def responded(self, event: ResponseEvent) -> None:
        key = (event.method, event.path, event.status_code)
        counter = self._counted.get(key)
        if counter is None:
            route = route_of(event.path)
            counter = self._requests.labels(event.method, route, str(event.status_code))
            if route != "other" and len(self._counted) < 4096:
                self._counted[key] = counter
        counter.inc()
        timed_key = (event.method, event.path)
        timer = self._timed.get(timed_key)
        if timer is None:
            timer = self._duration.labels(event.method, route_of(event.path))
            if len(self._timed) < 4096:
                self._timed[timed_key] = timer
        timer.observe(event.elapsed)

    def retried(self, event: RetryEvent) -> None:
        self._retries.labels(event.method, route_of(event.path)).inc()


def instrument(
    rotator: KeyRotator | None = None,
    client: AccountClient | None = None,
    registry: CollectorRegistry | None = None,
) -> Metrics:
    """Register the metrics of `rotator` and/or `client` with `registry`; return them.

    `registry` defaults to prometheus-client's global `REGISTRY`. A client's requests
    are counted through its hooks (its `with_options` copies share them); give the
    rotator's own client to count the rotator's requests. The names, all prefixed
    `cs2cap_`, are listed in `docs/operating.md`.
    """
    if rotator is not None and not isinstance(rotator, KeyRotator):
        raise TypeError(f"rotator must be a KeyRotator, not {type(rotator).__name__}")
    if client is not None and not isinstance(client, AccountClient):
        raise TypeError(f"client must be an AccountClient, not {type(client).__name__}")
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise TypeError(f"registry must be a CollectorRegistry, not {type(registry).__name__}")
    if rotator is None and client is None:
        raise ValueError("instrument() needs a rotator, a client, or both")
    registry = REGISTRY if registry is None else registry
    if rotator is not None:
        counted = _RotatorMetrics(registry)
        registry.register(_RotatorCollector(rotator))
        rotator._announcer.watchers.append(counted.watch)
    if client is not None:
        requests = _ClientMetrics(registry)
        registry.register(_ClientCollector(client))
        shared = client._session.shared
        hooks = shared.hooks
        shared.hooks = Hooks(
            on_request=hooks.on_request,
            on_response=(*hooks.on_response, requests.responded),
            on_retry=(*hooks.on_retry, requests.retried),
        )
    return Metrics(registry)
