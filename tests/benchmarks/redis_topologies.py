"""What a `RedisKeyStore` save costs, and how fast other processes hear of it, per topology.

    python tests/benchmarks/redis_topologies.py [--saves N] [--markdown FILE]

(or `nox -s bench`). Starts each topology on loopback with real redis-servers (one
server; one server with AOF `appendfsync always`; a 3+3 Redis Cluster; a primary, a
replica and three sentinels, with `min_replicas` 0 and 1), then saves N records through
one store while another store of the same name follows `changes()`. For each save it
times the `save()` call, and the time from the start of the save until the follower
yields the new generation (pub/sub; the poll interval is set far longer, so a poll never
answers). Prints one Markdown table of p50/p99 in milliseconds; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))

from _topologies import (  # type: ignore[import-not-found]
    _free_port,
    _start,
    start_cluster,
    start_sentinel_set,
)

from cs2cap_account import KeyRecord, RedisKeyStore, SecretKey

SURVIVES: Final = {
    "one server": "nothing: a restart empties it (holders write the key back)",
    "one server, AOF always": "a crash or restart of the server (not the loss of its disk)",
    "Cluster, min_replicas=0": "a node restart only if the replica had the save (async)",
    "Cluster, min_replicas=1": "the loss of the record's primary: its replica has the save",
    "Sentinel, min_replicas=0": "a failover only if the replica had the save (async)",
    "Sentinel, min_replicas=1": "the loss of the primary: the promoted replica has the save",
}


@attrs.frozen
class Row:
    """One topology's figures."""

    name: str
    save_ms: list[float]
    heard_ms: list[float]


def _record(generation: int) -> KeyRecord:
    return KeyRecord(
        generation=generation,
        key=SecretKey(f"sk_live_root_{'b' * 24}{generation:04d}"),
        key_id=f"key_{generation}",
        saved_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        lineage="bench",
    )


async def _measure(url: str, name: str, saves: int, min_replicas: int) -> tuple[list[float], ...]:
    writer = RedisKeyStore(url, name=name, min_replicas=min_replicas, replica_timeout=2.0)
    follower = RedisKeyStore(url, name=name, poll_interval=3600)
    heard: dict[int, float] = {}
    arrived = asyncio.Event()
    changes = follower.changes()
    await anext(changes)  # the poll at start

    async def follow() -> None:
        async for generation in changes:
            heard.setdefault(generation, time.perf_counter())
            arrived.set()

    following = asyncio.ensure_future(follow())
    await asyncio.sleep(0.3)  # subscribed
    save_ms: list[float] = []
    heard_ms: list[float] = []
    try:
        for generation in range(1, saves + 1):
            started = time.perf_counter()
            await writer.save(_record(generation), expected_generation=generation - 1 or None)
            save_ms.append((time.perf_counter() - started) * 1000)
            with contextlib.suppress(asyncio.TimeoutError):
                while generation not in heard:
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), 5)
            if generation in heard:
                heard_ms.append((heard[generation] - started) * 1000)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await changes.aclose()
        await writer.aclose()
        await follower.aclose()
    return save_ms, heard_ms


@contextmanager
def _topology(kind: str, directory: Path) -> Iterator[str]:
    executable = shutil.which("redis-server")
    assert executable is not None, "redis-server is not installed"
    if kind == "cluster":
        cluster = start_cluster(executable, directory)
        try:
            yield cluster.url
        finally:
            cluster.close()
    elif kind == "sentinel":
        watched = start_sentinel_set(executable, directory)
        try:
            yield watched.url
        finally:
            watched.close()
    else:
        extra = ("--appendonly", "yes", "--appendfsync", "always") if kind == "aof" else ()
        server = _start(executable, directory, _free_port(), *extra)
        try:
            yield f"redis://127.0.0.1:{server.port}/0"
        finally:
            server.kill()


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    """Run every topology and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    plans: list[tuple[str, str, int]] = [
        ("one server", "server", 0),
        ("one server, AOF always", "aof", 0),
        ("Cluster, min_replicas=0", "cluster", 0),
        ("Cluster, min_replicas=1", "cluster", 1),
        ("Sentinel, min_replicas=0", "sentinel", 0),
        ("Sentinel, min_replicas=1", "sentinel", 1),
    ]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, kind, replicas) in enumerate(plans):
            with _topology(kind, Path(scratch) / str(index)) as url:
                save_ms, heard_ms = asyncio.run(
                    _measure(url, f"bench-{index}", args.saves, replicas)
                )
            rows.append(Row(name, save_ms, heard_ms))
            print(f"{name}: done", file=sys.stderr)
    table = _table(rows, args.saves)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


def _table(rows: list[Row], saves: int) -> str:
    ms: Callable[[float], str] = lambda value: f"{value:.2f}"  # noqa: E731
    lines = [
        "| topology | a save survives | save p50 / p99 (ms) | heard by a follower p50 / p99 "
        "(ms) | heard |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {SURVIVES[row.name]} "
            f"| {ms(statistics.median(row.save_ms))} / {ms(_percentile(row.save_ms, 0.99))} "
            f"| {ms(statistics.median(row.heard_ms)) if row.heard_ms else '-'} / "
            f"{ms(_percentile(row.heard_ms, 0.99))} | {len(row.heard_ms)} of {saves} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
