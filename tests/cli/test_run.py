"""`cs2cap-account run -- CMD`: a real child process, following the store's key."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from cs2cap_account import AccountClient, FileKeyStore, KeyRotator
from cs2cap_account.cli import ExitStatus, main
from cs2cap_account.cli._supervise import exit_status, parse_on_rotate
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import TIMEOUT, assert_no_plaintext, env_for, finish, run, start

# The child: append its key (from the environment) to a file, then wait for signals.
CHILD = """
import os, signal, sys, time
out = sys.argv[1]
def note(text):
    with open(out, "a") as f:
        f.write(text + "\\n")
note("key " + os.environ["CS2C_API_KEY"])
signal.signal(signal.SIGUSR1, lambda *_: note("usr1"))
signal.signal(signal.SIGINT, lambda *_: sys.exit(5))
if len(sys.argv) > 2:
    sys.exit(int(sys.argv[2]))
while True:
    time.sleep(0.05)
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _until(path: Path, count: int) -> list[str]:
    """The file's lines once it has `count` of them (bounded by TIMEOUT)."""

    async def wait() -> list[str]:
        while len(lines := _lines(path)) < count:  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.02)
        return lines

    return await asyncio.wait_for(wait(), TIMEOUT)


async def _rotate(api: FakeCS2CapAPI, store_path: Path) -> str:
    """Rotate the key in the store, as a `rotate` beside `run` would; the new key."""
    record = await FileKeyStore(store_path).load()
    assert record is not None
    async with AccountClient(record.key, base_url=api.base_url) as client:
        event = await KeyRotator(client, store=FileKeyStore(store_path)).rotate_now()
    return event.new_key.reveal()


async def test_run_gives_cmd_the_key_in_its_environment_and_exits_with_its_status(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """CMD sees the root key in CS2C_API_KEY (not on its command line); run's exit
    status is CMD's, and the empty store was initialised with the key.
    """
    out, store = tmp_path / "seen", tmp_path / "key.json"
    result = await run(
        "run", "--store", str(store), "--", sys.executable, "-c", CHILD, str(out), "7",
        env=env_for(fake_cs2cap),
    )  # fmt: skip
    assert result.status == 7, result.stderr
    assert _lines(out) == [f"key {fake_cs2cap.root_key.reveal()}"]
    record = await FileKeyStore(store).load()
    assert record is not None and record.key == fake_cs2cap.root_key
    assert_no_plaintext(result, fake_cs2cap)


async def test_run_restarts_cmd_with_each_new_key_and_forwards_sigterm(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A rotation beside `run`: CMD is restarted with the new key. SIGTERM to `run` goes
    to CMD, which it ends; run exits 128 + 15.
    """
    out, store = tmp_path / "seen", tmp_path / "key.json"
    process = await start(
        "run", "--store", str(store), "--check-interval", "0.1",
        "--", sys.executable, "-c", CHILD, str(out),
        env=env_for(fake_cs2cap),
    )  # fmt: skip
    try:
        await _until(out, 1)
        new_key = await _rotate(fake_cs2cap, store)
        lines = await _until(out, 2)
        assert lines[1] == f"key {new_key}"
    finally:
        process.send_signal(signal.SIGTERM)
        result = await finish(process)
    assert result.status == 128 + signal.SIGTERM, result.stderr
    assert "restarting" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_plaintext(result, fake_cs2cap)


async def test_run_signals_cmd_on_a_new_key_and_forwards_sigint(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """`--on-rotate signal:USR1`: CMD keeps running and gets SIGUSR1 on the new key.
    SIGINT is passed on; CMD exits 5 on it, and so does run.
    """
    out, store = tmp_path / "seen", tmp_path / "key.json"
    process = await start(
        "run", "--store", str(store), "--check-interval", "0.1", "--on-rotate", "signal:USR1",
        "--", sys.executable, "-c", CHILD, str(out),
        env=env_for(fake_cs2cap),
    )  # fmt: skip
    try:
        await _until(out, 1)
        await _rotate(fake_cs2cap, store)
        lines = await _until(out, 2)
        assert lines[1] == "usr1"
    finally:
        process.send_signal(signal.SIGINT)
        result = await finish(process)
    assert result.status == 5, result.stderr
    assert len(_lines(out)) == 2, "not restarted"
    assert_no_plaintext(result, fake_cs2cap)


def test_run_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No command, no key, or a bad --on-rotate: usage errors (2), one line each."""
    monkeypatch.setenv("CS2C_API_BASE", "http://127.0.0.1:9/v1")
    store = ["--store", str(tmp_path / "key.json")]
    assert main(["run", *store]) == ExitStatus.USAGE
    assert "run needs a command" in capsys.readouterr().err
    assert main(["run", *store, "--", "true"]) == ExitStatus.USAGE
    assert "no root key" in capsys.readouterr().err
    assert main(["run", *store, "--on-rotate", "reload", "--", "true"]) == ExitStatus.USAGE
    assert "signal:NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "signum"),
    [("restart", None), ("signal:HUP", signal.SIGHUP), ("signal:SIGUSR2", signal.SIGUSR2)],
)
def test_on_rotate_parses(text: str, signum: signal.Signals | None) -> None:
    """`restart`, or `signal:NAME` with or without the SIG prefix."""
    assert parse_on_rotate(text).signum == signum


@pytest.mark.parametrize("text", ["", "signal:", "signal:NOPE", "reload"])
def test_on_rotate_refuses_others(text: str) -> None:
    """Anything else is a ValueError naming the forms."""
    with pytest.raises(ValueError, match="restart or signal:NAME"):
        parse_on_rotate(text)


def test_exit_status_follows_the_shell() -> None:
    """An exit code is itself; death by signal N is 128 + N."""
    assert (exit_status(0), exit_status(3), exit_status(-15)) == (0, 3, 143)
