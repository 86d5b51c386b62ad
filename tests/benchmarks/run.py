"""Benchmark cs2cap-account against raw aiohttp, httpx and the official `cs2cap` SDK.

    python tests/benchmarks/run.py [--quick] [--only 1,2,...] [--markdown FILE] [--json FILE]

(or `nox -s bench`). Servers run in separate processes on loopback: a responder replaying
the fake API's recorded replies (`_canned_server.py`) for the throughput workloads, and
the fake API itself (`cs2cap-account mock-server`) for rotation and rate limiting. The
client side of every comparison runs in this process. It prints one Markdown table of
medians and ratios, with the machine it ran on; it asserts nothing.

Workloads: 1 sequential `get_key()`; 2 concurrent `get_key()`; 3 the official SDK on the
sub-key get route; 4 import time and `--help` start-up; 5 rotation fan-out; 6 limiter accuracy;
7 and 8 a fleet rotation on one redis-server (requests, time to converge); 9 a rotation on
a saturated client, and ordinary calls under 2x oversubscription; 10 a free-tier fleet
(`_scale.py`); 11 the cost of metrics and tracing per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Final

import _scale as scale
import _workloads as work
import attrs
from _instrumentation import instrumentation_cost

from cs2cap_account import AccountClient

HERE: Final = Path(__file__).resolve().parent
_PACKAGES: Final = (
    "cs2cap-account",
    "aiohttp",
    "httpx",
    "cs2cap",
    "attrs",
    "cattrs",
    "tenacity",
    "yarl",
    "multidict",
)


@attrs.frozen
class Settings:
    """How much work each workload does."""

    sequential_calls: int = 2_000
    sequential_rounds: int = 7
    concurrent_calls: int = 10_000
    httpx_calls: int = 2_000
    concurrent_rounds: int = 5
    official_sequential_calls: int = 1_000
    official_concurrent_calls: int = 2_000
    official_rounds: int = 5
    import_rounds: int = 11
    startup_rounds: int = 21
    callbacks: int = 1_000
    fan_out_rounds: int = 21
    rotations: int = 11
    rate_window: float = 5.0
    limiter_runs: int = 3
    fleet_sizes: tuple[int, ...] = (1, 10, 100, 1_000)
    fleet_children: tuple[int, ...] = (0, 25)
    loaded_rotations: int = 5
    free_tier_window: float = 6.0


QUICK: Final = Settings(
    sequential_calls=500,
    sequential_rounds=3,
    concurrent_calls=2_000,
    httpx_calls=500,
    concurrent_rounds=2,
    official_sequential_calls=200,
    official_concurrent_calls=500,
    official_rounds=2,
    import_rounds=3,
    startup_rounds=5,
    fan_out_rounds=5,
    rotations=3,
    rate_window=2.0,
    limiter_runs=1,
    fleet_sizes=(1, 10, 100),
    fleet_children=(0, 25),
    loaded_rotations=2,
)


# -- servers --------------------------------------------------------------------------------


@contextlib.contextmanager
def _process(args: Sequence[str], *, ready: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start `args`, wait for a stdout line starting with `ready`, stop it on exit."""
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own scripts
        list(args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{args[1:]} exited before it was ready: {''.join(lines)}")
            lines.append(line)
            if line.startswith(ready):
                break
        else:  # pragma: no cover - a hung server
            raise RuntimeError(f"{args[1:]} did not start in time")
        yield proc, "".join(lines)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    stdin: IO[str] | None = proc.stdin
    if stdin is not None:
        with contextlib.suppress(OSError):
            stdin.close()
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _canned_server() -> Iterator[work.Servers]:
    args = [sys.executable, str(HERE / "_canned_server.py")]
    with _process(args, ready="{") as (_proc, out):
        info = json.loads(out.strip().splitlines()[-1])
        yield work.Servers(
            base=f"http://127.0.0.1:{info['port']}/v1",
            aiohttp_base=f"http://127.0.0.1:{info['aiohttp_port']}/v1",
            key=info["key"],
            sub_key_id=info["sub_key_id"],
        )


@contextlib.contextmanager
def _mock_server(*options: str) -> Iterator[tuple[str, str]]:
    """`cs2cap-account mock-server` on a free port: (base URL, root key)."""
    args = [sys.executable, "-m", "cs2cap_account", "mock-server", "--port", "0", *options]
    with _process(args, ready="CS2C_SESSION_TOKEN=") as (_proc, out):
        values = dict(line.split("=", 1) for line in out.strip().splitlines() if "=" in line)
        yield values["CS2C_API_BASE"], values["CS2C_API_KEY"]


# -- the machine ----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> list[str]:
    """Lines describing where the numbers come from."""
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [
        f"- CPU: {os.cpu_count()} logical cores, {_cpu_model()}",
        f"- OS: {platform.platform()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}, "
        f"asyncio default event loop",
        "- Packages: " + ", ".join(versions),
    ]
    if load is not None:
        lines.append(f"- Load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    return lines


# -- the table ------------------------------------------------------------------------------


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit in ("requests/s", "429s"):
        return f"{value:,.0f}"
    if unit == "x allowed rate":
        return f"{value:.3f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(rows: Sequence[work.Row]) -> str:
    """The results as a Markdown table."""
    out = [
        "| # | Workload | Unit | Ours | Baseline | Baseline value | Ours / baseline "
        "| Target | Met |",
        "|---|---|---|---:|---|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = row.ratio
        shown = "" if ratio is None else f"{ratio:.2f}x"
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        note = f" ({row.note})" if row.note else ""
        out.append(
            f"| {row.number} | {row.workload}{note} | {row.unit} | {_number(row.ours, row.unit)} "
            f"| {row.baseline_name} | {_number(row.baseline, row.unit)} "
            f"| {shown} | {row.target} | {met} |"
        )
    return "\n".join(out)


# -- running --------------------------------------------------------------------------------


async def _fresh_child_key(base_url: str, root_key: str, counter: list[int]) -> str:
    """A new child key limited to 300 RPM, so each limiter run starts with an empty window."""
    counter[0] += 1
    async with AccountClient(root_key, base_url=base_url, requests_per_minute=0) as client:
        made = await client.sub_keys.create(
            f"bench-{counter[0]}", rate_requests_per_minute_override=300
        )
    return made.key.reveal()


def run(settings: Settings, only: set[str]) -> tuple[list[work.Row], float]:  # noqa: PLR0912
    """Run the selected workloads; return their rows and the seconds it all took."""
    started = time.perf_counter()
    rows: list[work.Row] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    try:
        if only & {"1", "2", "3", "11"}:
            with _canned_server() as servers:
                if "1" in only:
                    say("1: sequential get_key vs raw aiohttp")
                    for number, base, server, target in (
                        ("1a", servers.base, "bare asyncio responder", True),
                        ("1b", servers.aiohttp_base, "aiohttp.web responder", False),
                    ):
                        rows.append(
                            work.sequential_get_key(
                                loop,
                                base,
                                servers.key,
                                calls=settings.sequential_calls,
                                rounds=settings.sequential_rounds,
                                number=number,
                                server=server,
                                target=target,
                            )
                        )
                if "2" in only:
                    say("2: concurrent get_key vs raw aiohttp and httpx")
                    rows += work.concurrent_get_key(
                        loop,
                        servers,
                        calls=settings.concurrent_calls,
                        httpx_calls=settings.httpx_calls,
                        rounds=settings.concurrent_rounds,
                    )
                if "3" in only:
                    say("3: sub-key get vs the official SDK")
                    rows += work.official_sdk(
                        loop,
                        servers,
                        sequential_calls=settings.official_sequential_calls,
                        concurrent_calls=settings.official_concurrent_calls,
                        rounds=settings.official_rounds,
                    )
                if "11" in only:
                    say("11: the cost of instrumentation per request")
                    rows += instrumentation_cost(
                        loop,
                        servers.base,
                        servers.key,
                        calls=settings.sequential_calls,
                        rounds=settings.sequential_rounds,
                    )
        if "4" in only:
            say("4: import time")
            rows += work.import_time(rounds=settings.import_rounds)
            rows.append(work.cli_help_time(rounds=settings.startup_rounds))
        if "5" in only:
            say("5: rotation fan-out")
            with _mock_server("--no-rate-limits") as (base_url, root_key):
                rotation = work.RotationRunner(
                    base_url, root_key, callbacks=settings.callbacks, rounds=settings.rotations
                )
                try:
                    rows += work.rotation_fan_out(
                        loop,
                        callbacks=settings.callbacks,
                        rounds=settings.fan_out_rounds,
                        rotation=rotation,
                    )
                finally:
                    loop.run_until_complete(rotation.aclose())
        if "6" in only:
            say("6: limiter accuracy")
            window = f"{settings.rate_window:g}"
            with _mock_server("--rate-window", window) as (base_url, root_key):
                counter = [0]
                rows += work.limiter_accuracy(
                    loop,
                    base_url,
                    lambda: _fresh_child_key(base_url, root_key, counter),
                    window=settings.rate_window,
                    runs=settings.limiter_runs,
                )
        if only & {"7", "8"}:
            say("7, 8: a fleet rotation on one redis-server")
            with (
                scale.redis_server() as redis_url,
                _mock_server("--no-rate-limits") as (
                    base_url,
                    root_key,
                ),
            ):
                rows += scale.fleet_rotation(
                    loop,
                    redis_url,
                    base_url,
                    root_key,
                    sizes=settings.fleet_sizes,
                    children=settings.fleet_children,
                )
        if "9" in only:
            say("9: a rotation on a saturated client")
            window = f"{settings.rate_window:g}"
            with _mock_server("--rate-window", window) as (base_url, root_key):
                rows += scale.saturated_rotation(
                    loop,
                    base_url,
                    root_key,
                    window=settings.rate_window,
                    rotations=settings.loaded_rotations,
                )
        if "10" in only:
            say("10: a free-tier fleet")
            window = f"{settings.free_tier_window:g}"
            with (
                scale.redis_server() as redis_url,
                _mock_server("--tier", "free", "--rate-window", window) as (base_url, root_key),
            ):
                rows += scale.free_tier_fleet(
                    loop, redis_url, base_url, root_key, window=settings.free_tier_window
                )
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    elapsed = time.perf_counter() - started
    say("done")
    return rows, elapsed


def report(rows: Sequence[work.Row], elapsed: float, settings: Settings) -> str:
    """The Markdown report: the machine, the table, and how long the run took."""
    lines = [
        "### Machine",
        "",
        *machine(),
        "",
        "### Results (medians)",
        "",
        table(rows),
        "",
        f"Whole run: {elapsed:.0f} s. Settings: "
        + ", ".join(f"{f.name}={getattr(settings, f.name)}" for f in attrs.fields(Settings)),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, print the Markdown report (and save it if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--only",
        default="1,2,3,4,5,6,7,8,9,10,11",
        help="comma-separated workload numbers (all)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    rows, elapsed = run(settings, only)
    text = report(rows, elapsed, settings)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        payload = {
            "elapsed_s": elapsed,
            "machine": machine(),
            "rows": [attrs.asdict(row) for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
