"""`cs2cap-account mock-server`, run as a real subprocess, and the command line's parsing."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from cs2cap_account.cli import main
from cs2cap_account.cli._mock_server import serve_until_stopped
from cs2cap_account.testing import FakeCS2CapAPI

STARTUP_TIMEOUT = 30.0
Server = tuple[asyncio.subprocess.Process, dict[str, str]]


@asynccontextmanager
async def mock_server(
    *args: str,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """Start `python -m cs2cap_account mock-server --port 0 ARGS`; yield it and what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cs2cap_account",
        "mock-server",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        while len(printed) < 3:
            line = await asyncio.wait_for(process.stdout.readline(), STARTUP_TIMEOUT)
            assert line, "the mock server exited before printing its settings"
            name, _, value = line.decode().strip().partition("=")
            printed[name] = value
        yield process, printed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def get_key(base_url: str, token: str) -> tuple[int, dict[str, str], str]:
    """`GET {base_url}/account/key` with `token`; return status, headers and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            base_url + "/account/key", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status, dict(response.headers), await response.text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_mock_server_answers_its_printed_key_and_stops_cleanly(signum: int) -> None:
    """The printed root key works against the printed base URL; a signal exits 0."""
    async with mock_server() as (process, printed):
        assert printed["CS2C_API_BASE"].startswith("http://127.0.0.1:")
        assert printed["CS2C_API_BASE"].endswith("/v1")
        assert printed["CS2C_API_KEY"].startswith("sk_live_root_")
        status, _, body = await get_key(printed["CS2C_API_BASE"], printed["CS2C_API_KEY"])
        assert status == 200
        assert '"key_prefix":"sk_live_root"' in body
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), STARTUP_TIMEOUT) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
    assert printed["CS2C_API_KEY"] not in log


async def test_mock_server_options_are_applied() -> None:
    """--tier, --root-key, --session-token and --no-rate-limits reach the fake."""
    root = "sk_live_root_" + "Z" * 32
    args = ("--tier", "free", "--root-key", root, "--session-token", "eyJ.cli.token")
    async with mock_server(*args, "--no-rate-limits") as (process, printed):
        assert printed["CS2C_API_KEY"] == root
        assert printed["CS2C_SESSION_TOKEN"] == "eyJ.cli.token"
        statuses = [
            (await get_key(printed["CS2C_API_BASE"], "eyJ.cli.token"))[:2] for _ in range(21)
        ]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), STARTUP_TIMEOUT) == 0
    assert {status for status, _ in statuses} == {200}
    assert statuses[-1][1]["X-RateLimit-Tier"] == "free"


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, a bad tier or a malformed root key: argparse's message and status 2."""
    assert main([]) == 2
    assert main(["mock-server", "--tier", "gold"]) == 2
    assert main(["mock-server", "--root-key", "sk_live_child_x"]) == 2
    assert "sk_live_root_" in capsys.readouterr().err


def test_help_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`mock-server --help` documents its options."""
    assert main(["mock-server", "--help"]) == 0
    assert "--no-rate-limits" in capsys.readouterr().out


def test_a_busy_port_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """If the port is taken, the command says so and returns 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["mock-server", "--port", str(port)]) == 1
    assert "mock-server" in capsys.readouterr().err


async def test_serving_in_process_announces_and_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The serve loop prints base URL, key and token, and returns once told to stop."""
    api = FakeCS2CapAPI()
    stop = asyncio.Event()
    stop.set()
    await serve_until_stopped(api, stop)
    out = capsys.readouterr().out
    assert f"CS2C_API_KEY={api.root_key.reveal()}" in out
    assert f"CS2C_SESSION_TOKEN={api.session_token.reveal()}" in out
    assert "CS2C_API_BASE=http://127.0.0.1:" in out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_importing_the_package_imports_neither_fake_nor_cli() -> None:
    """`import cs2cap_account` leaves `cs2cap_account.testing` and the CLI unloaded."""
    code = (
        "import sys, cs2cap_account; "
        "loaded = [m for m in sys.modules if m.startswith(('cs2cap_account.testing', "
        "'cs2cap_account.cli', 'aiohttp.web'))]; print(loaded)"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
