"""Latency from the save of a new key to its arrival in each sink: median and p99.

    python tests/benchmarks/sink_latency.py [--rotations N] [--markdown FILE]

(also run by `nox -s bench`). Each rotation reissues against the fake API in-process,
saves to a `FileKeyStore`, verifies, then publishes to four sinks at once: a `FileSink`,
a `CommandSink` (`true`), an `AwsSecretsManagerSink` on moto's server mode and a
`VaultKVSink` on an OpenBao dev server, both on loopback in their own processes. The time
measured runs from the end of the store's save to the end of each sink's publish (so it
includes the verification call the sinks wait for). It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from cs2cap_account import AccountClient, FileKeyStore, KeyRecord, KeyRotator, RotationEvent
from cs2cap_account.sinks import (
    AwsSecretsManagerSink,
    CommandSink,
    FileSink,
    KeySink,
    VaultKVSink,
)
from cs2cap_account.testing import FakeCS2CapAPI

BAO_TOKEN: Final = "bench-root-token"  # a dev server's root token
AWS: Final = {
    "region_name": "us-east-1",
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "bench",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _service(argv: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


class TimedStore(FileKeyStore):
    """A file store that notes when each save of a key ended."""

    saved_at: dict[str, float]

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        await super().save(record, expected_generation=expected_generation)
        self.saved_at.setdefault(record.key_id, time.perf_counter())  # its first save


class Timed:
    """A sink wrapper that notes when each publish to `inner` ended."""

    def __init__(self, inner: Any, store: TimedStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.latencies: list[float] = []

    async def publish(self, event: RotationEvent) -> None:
        await self.inner.publish(event)
        self.latencies.append(time.perf_counter() - self.store.saved_at[event.key_id])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(rotations: int, moto_url: str, bao_url: str, directory: Path) -> list[Timed]:
    """Rotate `rotations` times; the timed sinks, with their latencies."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    store = TimedStore(directory / "key.json")
    store.saved_at = {}
    config = AioConfig(retries={"total_max_attempts": 1})
    async with (
        FakeCS2CapAPI(rate_limits=False) as api,
        AccountClient(api.root_key, base_url=api.base_url) as client,
        get_session().create_client(
            "secretsmanager", endpoint_url=moto_url, config=config, **AWS
        ) as aws,
    ):
        await aws.create_secret(Name="bench/cs2cap", SecretString="placeholder")
        inner: list[KeySink] = [
            FileSink(directory / "key.env", format="env"),
            CommandSink([shutil.which("true") or "/bin/true"]),
            AwsSecretsManagerSink("bench/cs2cap", client=aws),
            VaultKVSink(bao_url, token=BAO_TOKEN, path="bench/cs2cap"),
        ]
        timed = [Timed(sink, store) for sink in inner]
        rotator = KeyRotator(client, store=store, sinks=timed)
        for _ in range(rotations):
            event = await rotator.rotate_now()
            failed = [f"{f.sink}: {f.error}" for f in event.sink_errors]
            if failed:
                raise RuntimeError("a sink failed: " + "; ".join(failed))
    return timed


def table(timed: list[Timed], rotations: int) -> str:
    """A Markdown table: one row per sink, median and p99 in milliseconds."""
    lines = [
        f"Latency from save to sink, {rotations} rotations (ms)",
        "",
        "| sink | median | p99 |",
        "|---|---:|---:|",
    ]
    for sink in timed:
        values = [v * 1000 for v in sink.latencies]
        kind = type(sink.inner).__name__
        lines.append(
            f"| {kind} | {statistics.median(values):.1f} | {_percentile(values, 0.99):.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Start moto and OpenBao, rotate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rotations", type=int, default=100)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    bindir = str(Path(sys.executable).parent)
    moto = shutil.which("moto_server", path=bindir) or shutil.which("moto_server")
    bao = shutil.which("bao", path=bindir) or shutil.which("bao")
    if moto is None or bao is None:
        print("needs moto_server and bao: pip install '.[aws,services]'", file=sys.stderr)
        return 1
    moto_port, bao_port = _free_port(), _free_port()
    bao_argv = [
        bao, "server", "-dev", f"-dev-root-token-id={BAO_TOKEN}",
        f"-dev-listen-address=127.0.0.1:{bao_port}",
    ]  # fmt: skip
    with (
        _service([moto, "-H", "127.0.0.1", "-p", str(moto_port)], moto_port),
        _service(bao_argv, bao_port),
        tempfile.TemporaryDirectory() as directory,
    ):
        os.environ.setdefault("AWS_DEFAULT_REGION", AWS["region_name"])
        timed = asyncio.run(
            measure(
                args.rotations,
                f"http://127.0.0.1:{moto_port}",
                f"http://127.0.0.1:{bao_port}",
                Path(directory),
            )
        )
    text = table(timed, args.rotations)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
