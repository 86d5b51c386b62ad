"""Rotation at scale: fleets of rotators on one redis-server, and rotation under load.

Workloads 7 to 10 of `run.py`:

- 7: API requests per rotation, summed over a fleet of N rotators (separate clients and
  `RedisKeyStore`s, spread over a few processes), with M child keys;
- 8: from the leader's save until every rotator holds the new key and ran its callbacks;
- 9: `rotate_now()` on a client saturated by ordinary traffic at its learned rate, against
  the same client idle; and ordinary calls' waits under 2x oversubscription;
- 10: a free-tier fleet (20 requests a minute) of 100 rotators through 10 rotations.

Every fleet member runs `_scale_worker.py`; this process is the leader, and counts its
own requests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from _workloads import Row

from cs2cap_account import (
    AccountClient,
    Hooks,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RedisKeyStore,
    RequestEvent,
    ResponseEvent,
)
from cs2cap_account.errors import RateLimitError

__all__ = [
    "fleet_rotation",
    "free_tier_fleet",
    "redis_server",
    "saturated_rotation",
]

HERE: Final = Path(__file__).resolve().parent
WORKER: Final = HERE / "_scale_worker.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of our own on loopback, without persistence: its URL."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(  # noqa: S603 - our own fixed arguments
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--maxclients",
                "20000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock,
                ):
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


class Counting:
    """Hooks that count one client's requests and 429s."""

    def __init__(self) -> None:
        self.requests = 0
        self.refused = 0

    def hooks(self) -> Hooks:
        return Hooks(on_request=[self._request], on_response=[self._response])

    def _request(self, _event: RequestEvent) -> None:
        self.requests += 1

    def _response(self, event: ResponseEvent) -> None:
        if event.status_code == 429:
            self.refused += 1


class TimedStore(RedisKeyStore):
    """The leader's store: remembers the wall time each new generation was saved."""

    saved_at: dict[int, float]

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        await super().save(record, expected_generation=expected_generation)
        if record.generation != expected_generation:
            self.saved_at = {**getattr(self, "saved_at", {}), record.generation: time.time()}


@attrs.define
class Worker:
    """One fleet process, spoken to a line at a time."""

    proc: asyncio.subprocess.Process
    count: int

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextlib.asynccontextmanager
async def fleet(
    redis_url: str,
    name: str,
    base_url: str,
    root_key: str,
    counts: Sequence[int],
    interval: float | None = None,
) -> AsyncIterator[list[Worker]]:
    """Start one worker process per entry of `counts`; yield once every rotator is ready."""
    workers: list[Worker] = []
    try:
        for count in counts:
            args = [str(WORKER), redis_url, name, base_url, root_key, str(count)]
            if interval is not None:
                args.append(str(interval))
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=2**24,
            )
            workers.append(Worker(proc, count))
        for worker in workers:
            assert worker.proc.stdout is not None
            line = await asyncio.wait_for(worker.proc.stdout.readline(), 300.0)
            if not line:
                raise RuntimeError("a fleet worker exited before it was ready")
        yield workers
    finally:
        for worker in workers:
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
            try:
                await asyncio.wait_for(worker.proc.wait(), 30.0)
            except asyncio.TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()


def _spread(total: int) -> list[int]:
    """N rotators over a few processes: 1, 2 or 4 of them."""
    processes = 1 if total == 1 else 2 if total <= 10 else 4
    return [total // processes + (1 if i < total % processes else 0) for i in range(processes)]


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@attrs.frozen
class FleetResult:
    """One fleet rotation: requests over the fleet, and how long until all had the key."""

    fleet: int
    children: int
    requests: int
    leader_requests: int
    latencies_ms: tuple[float, ...]
    new_key: str


async def _fleet_rotation_once(
    redis_url: str, base_url: str, root_key: str, fleet_size: int, children: int, run: int
) -> FleetResult:
    name = f"bench-fleet-{fleet_size}-{children}-{run}"
    counting = Counting()
    async with AccountClient(
        root_key, base_url=base_url, requests_per_minute=0, hooks=counting.hooks()
    ) as client:
        existing = {detail.key.name async for detail in client.sub_keys.iterate()}
        for i in range(children):
            if f"child-{i:02d}" not in existing:
                await client.sub_keys.create(f"child-{i:02d}")
        store = TimedStore(redis_url, name=name)
        try:
            leader = KeyRotator(client, store=store, recreate_sub_keys=children > 0)
            await leader.check()  # the store holds the client's key
            members = _spread(fleet_size - 1) if fleet_size > 1 else []
            async with fleet(redis_url, name, base_url, root_key, members) as workers:
                for worker in workers:
                    await worker.ask("reset")
                counting.requests = 0
                event = await leader.rotate_now()
                saved = store.saved_at[event.generation]
                reports: list[dict[str, Any]] = []
                deadline = time.monotonic() + 120.0
                while time.monotonic() < deadline:
                    reports = [await worker.ask("report") for worker in workers]
                    done = sum(len(r["adopted_at"].get(str(event.generation), [])) for r in reports)
                    if done >= fleet_size - 1:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # anything a rotator sends after adopting counts too
                reports = [await worker.ask("report") for worker in workers]
        finally:
            await store.aclose()
        latencies = [
            (at - saved) * 1000.0
            for report in reports
            for at in report["adopted_at"].get(str(event.generation), [])
        ]
        sent = counting.requests + sum(report["requests"] for report in reports)
        return FleetResult(
            fleet_size,
            children,
            sent,
            counting.requests,
            tuple(latencies),
            event.new_key.reveal(),  # the fake's key: the next run starts from it
        )


def fleet_rotation(
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    base_url: str,
    root_key: str,
    *,
    sizes: Sequence[int],
    children: Sequence[int],
) -> list[Row]:
    """Workloads 7 and 8: requests per rotation over the fleet, and time to converge."""
    rows: list[Row] = []
    latency: dict[int, FleetResult] = {}
    for run, (size, kids) in enumerate((s, m) for m in children for s in sizes):
        print(f"    fleet of {size}, {kids} child keys", file=sys.stderr, flush=True)
        result = loop.run_until_complete(
            _fleet_rotation_once(redis_url, base_url, root_key, size, kids, run)
        )
        root_key = result.new_key
        target = kids + 4
        rows.append(
            Row(
                f"7{'abcdefghij'[run]}",
                f"API requests per rotation over a fleet of {size:,} rotators, {kids} child keys",
                "requests",
                float(result.requests),
                target=f"<= {target} (M + 4)",
                met=result.requests <= target,
                note=f"the leader's own: {result.leader_requests}; "
                f"{len(result.latencies_ms)} of {size - 1} others adopted",
            )
        )
        print(f"    -> {rows[-1]}", file=sys.stderr, flush=True)
        if kids == 0 and size >= 10:
            latency[size] = result
    for index, (size, result) in enumerate(sorted(latency.items())):
        p50 = _percentile(result.latencies_ms, 0.50)
        p99 = _percentile(result.latencies_ms, 0.99)
        rows.append(
            Row(
                f"8{'abc'[index]}",
                f"save to every rotator holding the key and its callbacks run, N = {size:,}"
                " (p50 / p99)",
                "ms",
                p99,
                target="p99 <= 100 ms" if size == 100 else "(reported)",
                met=(p99 <= 100.0) if size == 100 else None,
                note=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(result.latencies_ms):.1f} ms",
            )
        )
    return rows


# -- 9. a rotation under load ---------------------------------------------------------------


async def _saturated(
    base_url: str, root_key: str, *, window: float, rotations: int, tasks: int
) -> tuple[list[float], list[float], int, str]:
    """`rotate_now()` idle and saturated (alternating); the 429s seen meanwhile; the key."""
    counting = Counting()
    async with AccountClient(
        root_key, base_url=base_url, hooks=counting.hooks(), max_retries=0
    ) as client:
        await client.get_key()  # learns the key's rate
        limiter = client._session.shared.limiter
        assert limiter is not None
        limiter.window = window  # the fake's window is scaled down the same way
        rotator = KeyRotator(client, store=MemoryKeyStore())
        idle: list[float] = []
        busy: list[float] = []
        stop = asyncio.Event()

        async def ordinary() -> None:
            while not stop.is_set():
                with contextlib.suppress(RateLimitError):
                    await client.get_key()

        for _ in range(rotations):
            started = time.perf_counter()
            await rotator.rotate_now()
            idle.append(time.perf_counter() - started)
            await asyncio.sleep(window)  # the key's window empties again
            stop.clear()
            load = [asyncio.ensure_future(ordinary()) for _ in range(tasks)]
            await asyncio.sleep(window * 1.5)  # saturated: the window is full, callers queue
            started = time.perf_counter()
            await rotator.rotate_now()
            busy.append(time.perf_counter() - started)
            stop.set()
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            await asyncio.sleep(window)
        key = client.api_key
        assert key is not None
        return idle, busy, counting.refused, key.reveal()  # the fake's key, for what follows


async def _oversubscribed(
    base_url: str, root_key: str, *, window: float, seconds: float, rotations: int
) -> tuple[list[float], int, int]:
    """Ordinary calls offered at twice the learned rate, open loop, with rotations meanwhile.

    Returns each call's wait (from the call until its request was sent), the 429s, and
    the number of calls.
    """
    counting = Counting()
    waits: list[float] = []
    async with AccountClient(
        root_key, base_url=base_url, hooks=counting.hooks(), max_retries=0
    ) as client:
        info = await client.get_key()
        limiter = client._session.shared.limiter
        assert limiter is not None
        limiter.window = window
        rate = info.effective_rate_requests_per_minute / window  # per second, scaled
        rotator = KeyRotator(client, store=MemoryKeyStore())

        async def one() -> None:
            started = time.perf_counter()
            with contextlib.suppress(RateLimitError):
                await client.get_key()
            waits.append(time.perf_counter() - started)

        async def rotate_meanwhile() -> None:
            for _ in range(rotations):
                await asyncio.sleep(seconds / (rotations + 1))
                await rotator.rotate_now()

        rotating = asyncio.ensure_future(rotate_meanwhile())
        calls = []
        started = time.perf_counter()
        offered = 0
        while time.perf_counter() - started < seconds:
            calls.append(asyncio.ensure_future(one()))
            offered += 1
            await asyncio.sleep(1.0 / (2.0 * rate))
        await asyncio.gather(*calls, rotating)
        return waits, counting.refused, offered


def saturated_rotation(
    loop: asyncio.AbstractEventLoop,
    base_url: str,
    root_key: str,
    *,
    window: float,
    rotations: int,
) -> list[Row]:
    """Workload 9: a rotation on a saturated client against an idle one; 2x oversubscription."""
    idle, busy, refused, root_key = loop.run_until_complete(
        _saturated(base_url, root_key, window=window, rotations=rotations, tasks=5)
    )
    ratio = statistics.median(busy) / statistics.median(idle)
    worst = max(busy) / statistics.median(idle)
    waits, refused_over, offered = loop.run_until_complete(
        _oversubscribed(base_url, root_key, window=window, seconds=4 * window, rotations=3)
    )
    return [
        Row(
            "9a",
            f"`rotate_now()` saturated by 5 callers at the learned rate vs idle ({rotations} "
            f"each, window scaled to {window:g} s)",
            "ms",
            statistics.median(busy) * 1000.0,
            baseline_name="idle",
            baseline=statistics.median(idle) * 1000.0,
            ratio=ratio,
            target="<= 1.5x idle",
            met=ratio <= 1.5,
            note=f"slowest saturated: {max(busy) * 1000.0:.0f} ms ({worst:.1f}x); 429s: {refused}",
        ),
        Row(
            "9b",
            f"ordinary calls under 2x oversubscription, {offered} offered over "
            f"{4 * window:g} s with 3 rotations (p50 / p99 / max wait)",
            "ms",
            _percentile(waits, 0.99) * 1000.0,
            target="0 x 429",
            met=refused_over == 0,
            note=f"p50 {_percentile(waits, 0.5) * 1000.0:.0f} ms, "
            f"p99 {_percentile(waits, 0.99) * 1000.0:.0f} ms, "
            f"max {max(waits) * 1000.0:.0f} ms; 429s: {refused_over}",
        ),
    ]


# -- 10. a free-tier fleet ------------------------------------------------------------------


async def _free_tier(
    redis_url: str, base_url: str, root_key: str, *, window: float, fleet_size: int, rotations: int
) -> tuple[int, int, int]:
    """100 scheduled rotators and a leader rotating `rotations` times: (429s, requests, held)."""
    name = "bench-free-tier"
    counting = Counting()
    interval = window / 4
    async with AccountClient(root_key, base_url=base_url, hooks=counting.hooks()) as client:
        await client.get_key()
        limiter = client._session.shared.limiter
        assert limiter is not None
        limiter.window = window
        store = RedisKeyStore(redis_url, name=name)
        try:
            leader = KeyRotator(client, store=store)
            await leader.check()
            members = _spread(fleet_size - 1)
            async with fleet(redis_url, name, base_url, root_key, members, interval) as workers:
                for worker in workers:
                    await worker.ask("reset")
                counting.refused = counting.requests = 0
                event = None
                for _ in range(rotations):
                    await asyncio.sleep(window / 2)
                    event = await leader.rotate_now()
                await asyncio.sleep(window / 2)
                reports = [await worker.ask("report") for worker in workers]
        finally:
            await store.aclose()
        assert event is not None
        held = sum(
            1
            for report in reports
            for generation in report["generations"]
            if generation == event.generation
        )
        refused = counting.refused + sum(report["refused"] for report in reports)
        sent = counting.requests + sum(report["requests"] for report in reports)
        return refused, sent, held + 1


def free_tier_fleet(
    loop: asyncio.AbstractEventLoop,
    redis_url: str,
    base_url: str,
    root_key: str,
    *,
    window: float,
    fleet_size: int = 100,
    rotations: int = 10,
) -> list[Row]:
    """Workload 10: a free-tier fleet through `rotations` rotations: 429s."""
    refused, sent, held = loop.run_until_complete(
        _free_tier(
            redis_url,
            base_url,
            root_key,
            window=window,
            fleet_size=fleet_size,
            rotations=rotations,
        )
    )
    return [
        Row(
            "10",
            f"free tier (20 a minute, window scaled to {window:g} s): {fleet_size} scheduled "
            f"rotators (a check every {window / 4:g} s each) through {rotations} rotations",
            "429s",
            float(refused),
            target="0",
            met=refused == 0,
            note=f"{sent} requests in all; {held} of {fleet_size} hold the last key",
        )
    ]
