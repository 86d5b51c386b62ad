"""Workload 7: what instrumentation costs per request, as a ratio to a bare client.

Sequential `get_key()` against the replaying responder, three clients side by side in
one loop (alternating blocks, the order rotating each round, as every workload here):
bare; with `cs2cap_account.metrics.instrument()` (Prometheus counters and the duration
histogram, through the client's hooks); and with `trace()` as well (a span per attempt,
through an OpenTelemetry SDK tracer provider that records each span and exports none,
so the exporter's own cost is left out); and with `trace()` through the API's no-op
provider (OpenTelemetry installed but no SDK configured).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from _workloads import Row, _client, _paired, interleave_sequential
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NoOpTracerProvider
from prometheus_client import CollectorRegistry

from cs2cap_account import AccountClient
from cs2cap_account.metrics import instrument, trace

__all__ = ["instrumentation_cost"]


def instrumentation_cost(
    loop: asyncio.AbstractEventLoop, base_url: str, key: str, *, calls: int, rounds: int
) -> list[Row]:
    """Rows 7a (metrics), 7b (metrics and SDK traces), 7c (traces, no SDK): per-call time
    over a bare client's.
    """
    bare = _client(base_url, key)
    metered = _client(base_url, key)
    instrument(client=metered, registry=CollectorRegistry())
    traced = _client(base_url, key)
    instrument(client=traced, registry=CollectorRegistry())
    provider = TracerProvider()
    trace(client=traced, tracer_provider=provider)
    untraced = _client(base_url, key)
    trace(client=untraced, tracer_provider=NoOpTracerProvider())

    def calling(client: AccountClient) -> Callable[[int], Awaitable[None]]:
        async def run(count: int) -> None:
            for _ in range(count):
                await client.get_key()

        return run

    try:
        times = interleave_sequential(
            loop,
            {
                "bare": calling(bare),
                "metrics": calling(metered),
                "traced": calling(traced),
                "noop": calling(untraced),
            },
            calls=calls,
            rounds=rounds,
        )
    finally:
        for client in (bare, metered, traced, untraced):
            loop.run_until_complete(client.aclose())
        provider.shutdown()
    bare_us = sorted(times.rounds["bare"])[len(times.rounds["bare"]) // 2] * 1e6
    rows = []
    for number, name, label in (
        ("11a", "metrics", "with `instrument()` (Prometheus)"),
        ("11b", "traced", "with `instrument()` and `trace()` (OpenTelemetry SDK)"),
        ("11c", "noop", "with `trace()`, no SDK configured (no-op provider)"),
    ):
        ours = sorted(times.rounds[name])[len(times.rounds[name]) // 2] * 1e6
        rows.append(
            Row(
                number,
                f"sequential `get_key()` x{calls:,} {label}",
                "us per call",
                ours,
                "the same client, uninstrumented",
                bare_us,
                _paired(times.blocks[name], times.blocks["bare"]),
                "(reported)",
            )
        )
    return rows
