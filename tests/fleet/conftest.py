"""A real `redis-server` for the fleet tests, started once per session on a free loopback port.

Without `redis-server` on PATH (or without the `redis` package) the Redis tests are
skipped with a message; under `CI=true` they fail instead, since CI installs both.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from ._topologies import Cluster, SentinelSet, start_cluster, start_sentinel_set

if TYPE_CHECKING:
    from redis.asyncio import Redis

START_BOUND = 10.0


@attrs.frozen
class RedisServer:
    """A running `redis-server`: its URL and port."""

    url: str
    port: int


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where Redis must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _options(port: int, directory: Path) -> list[str]:
    """Loopback only, no persistence, files (if any) in `directory`."""
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "save": "",
        "appendonly": "no",
        "dir": str(directory),
        "daemonize": "no",
        "loglevel": "warning",
        "logfile": str(directory / "redis.log"),
    }
    return [part for name, value in options.items() for part in (f"--{name}", value)]


def start_redis_server(executable: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free port; bounded wait for it to answer PING."""
    for _ in range(3):  # a port found free may be taken before the server binds it
        port = _free_port()
        proc = subprocess.Popen(  # noqa: S603 - our own fixed arguments
            [executable, *_options(port, directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers_ping(port):
                return proc, port
            time.sleep(0.02)
        stop_redis_server(proc)
    pytest.fail(f"redis-server did not start; see {directory / 'redis.log'}", pytrace=False)


def stop_redis_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop redis-server (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A `redis-server` of our own (no persistence, in a temp dir), stopped at the end."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable('the redis package is not installed (pip install ".[redis]")')
    executable = shutil.which("redis-server")
    if executable is None:
        _unavailable("redis-server is not installed (apt-get install redis-server)")
        raise AssertionError  # unreachable: skip and fail raise
    proc, port = start_redis_server(executable, tmp_path_factory.mktemp("redis"))
    try:
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port)
    finally:
        stop_redis_server(proc)


def _executables() -> str:
    """redis-server's path, with redis-cli beside it (the topologies need both)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _unavailable('the redis package is not installed (pip install ".[redis]")')
    executable = shutil.which("redis-server")
    if executable is None or shutil.which("redis-cli") is None:
        _unavailable("redis-server and redis-cli are not installed (apt-get install redis-server)")
        raise AssertionError  # unreachable: skip and fail raise
    return executable


@pytest.fixture
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis Cluster of our own: 3 primaries and 3 replicas on loopback, killed at the end."""
    cluster = start_cluster(_executables(), tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A primary, a replica and three sentinels of our own on loopback, killed at the end."""
    watched = start_sentinel_set(_executables(), tmp_path_factory.mktemp("sentinel"))
    try:
        yield watched
    finally:
        watched.close()


@pytest.fixture
def store_name() -> str:
    """A store name of its own for each test, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the test server, for looking at what a store wrote."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
