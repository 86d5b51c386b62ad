"""`cs2cap-account rotate`: one check with `--once`, or a long-lived process until a signal."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cs2cap_account import FileKeyStore, KeyRecord
from cs2cap_account.cli import ExitStatus, main
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import TIMEOUT, Result, assert_no_plaintext, env_for, finish, run, start

READY = "SIGTERM or Ctrl-C stops"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A `redis-server` of this test's own on a free port (skipped where there is none)."""
    pytest.importorskip("redis")
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 - a fixed command line of our own
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not _answers_ping(port):
            assert server.poll() is None and time.monotonic() < deadline, "no redis-server"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(TIMEOUT)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def stored(path: Path) -> KeyRecord:
    """The record in the key file at `path`."""
    record = await FileKeyStore(path).load()
    assert record is not None
    return record


async def test_rotate_once_leaves_a_fresh_key_and_rotates_an_aged_one(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A fresh key is stored as generation 1 and left alone, with the date it falls due
    (the earlier of --max-age and --before-expiry); once it is older than --max-age, one
    check reissues it, saves generation 2 and re-creates the child key. The second run
    has no CS2C_API_KEY: it starts from the stored key.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    args = ("rotate", "--once", "--max-age", "30d", "--before-expiry", "7d", "--store", str(path))
    first_id = api.root_key_id
    api.add_child_key("bot", rate_requests_per_minute_override=60)
    api.set_root_expires_at(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=20))

    fresh = await run(*args, env=env_for(api))
    assert fresh.status == 0, fresh.stderr
    assert f"Root key {first_id} is not due for rotation" in fresh.stdout
    assert "; due " in fresh.stdout
    assert "(in 12 days))." in fresh.stdout
    assert api.reissues == 0
    assert ((await stored(path)).generation, (await stored(path)).key) == (1, api.root_key)

    api.age_root_key(dt.timedelta(days=31))
    aged = await run(*args, "--recreate-sub-keys", env=env_for(api, use_root_key=False))
    assert aged.status == 0, aged.stderr
    assert api.reissues == 1
    record = await stored(path)
    assert (record.generation, record.key, record.key_id) == (2, api.root_key, api.root_key_id)
    assert api.is_active(record.sub_keys["bot"].key)
    assert (
        f"rotated the root key {first_id} -> {api.root_key_id} (generation 2, reason max_age); "
        f"new key {api.root_key} saved in FileKeyStore('{path}'); re-created child keys: bot"
    ) in aged.stdout
    assert f"root key {first_id} is due for rotation (max_age)" in aged.stderr
    for result in (fresh, aged):
        assert_no_plaintext(result, api)


async def test_rotate_once_keeps_the_key_in_redis_with_redis_url(
    fake_cs2cap: FakeCS2CapAPI, redis_url: str
) -> None:
    """`--redis URL` keeps the key in a `RedisKeyStore`: the rotated key is stored there."""
    from cs2cap_account.stores import RedisKeyStore

    fake_cs2cap.age_root_key(dt.timedelta(days=31))
    args = ("rotate", "--once", "--max-age", "30d", "--redis", redis_url)
    result = await run(*args, env=env_for(fake_cs2cap))
    assert result.status == 0, result.stderr
    assert "(generation 2, reason max_age)" in result.stdout
    assert "saved in RedisKeyStore(name='cs2cap')" in result.stdout
    store = RedisKeyStore(redis_url)
    try:
        record = await store.load()
    finally:
        await store.aclose()
    assert record is not None
    assert (record.generation, record.key) == (2, fake_cs2cap.root_key)
    assert_no_plaintext(result, fake_cs2cap)


async def test_rotate_once_recovers_a_lost_reissue_once_given_a_session_token(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A lost reissue response stops a rotator without a token (status 7, the old key is
    revoked); run again with --recovery-token-env, it reissues with the token and saves.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    args = ("rotate", "--once", "--max-age", "30d", "--store", str(path))
    api.age_root_key(dt.timedelta(days=31))
    api.faults.drop_after_commit("reissue_key")

    lost = await run(*args, env=env_for(api))
    assert lost.status == ExitStatus.ROTATION
    assert "the response carrying the new key was lost" in lost.stderr.splitlines()[-1]
    assert api.reissues == 1
    assert not api.is_active((await stored(path)).key)

    env = env_for(api, use_root_key=False, MY_JWT=api.session_token.reveal())
    recovered = await run(*args, "--recovery-token-env", "MY_JWT", env=env)
    assert recovered.status == 0, recovered.stderr
    assert api.reissues == 2
    record = await stored(path)
    assert (record.generation, record.key) == (2, api.root_key)
    assert "(generation 2, reason max_age)" in recovered.stdout
    for result in (lost, recovered):
        assert_no_plaintext(result, api)


async def until_line(process: asyncio.subprocess.Process, text: str) -> str:
    """Read stderr until a line containing `text`; return everything read."""
    assert process.stderr is not None
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(process.stderr.readline(), TIMEOUT)
        assert line, f"the command ended before printing {text!r}: {seen}"
        seen += line.decode()
    return seen


async def test_rotate_runs_until_sigterm_or_sigint_then_exits_0(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """The long-lived rotator stops cleanly on SIGTERM and on SIGINT: status 0."""

    async def stopped_by(signum: signal.Signals) -> Result:
        args = ("rotate", "--max-age", "30d", "--store", str(tmp_path / f"{signum.name}.json"))
        process = await start(*args, "--check-interval", "1h", env=env_for(fake_cs2cap))
        head = await until_line(process, READY)
        assert "checking every 3600 s" in head
        process.send_signal(signum)
        rest = await finish(process)
        return Result(rest.status, rest.stdout, head + rest.stderr)

    results = await asyncio.gather(stopped_by(signal.SIGTERM), stopped_by(signal.SIGINT))
    for result in results:
        assert result.status == 0, result.stderr
        assert "cs2cap_account.cli: stopping" in result.stderr
        assert "Traceback" not in result.stderr
        assert_no_plaintext(result, fake_cs2cap)
    assert fake_cs2cap.reissues == 0


def test_rotate_usage_errors_and_an_unreachable_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing options, an unset token variable and a missing redis extra are usage
    errors (2); a Redis that cannot be reached is a key-store error (1). None of them
    gets as far as the API, so they run in-process.
    """
    monkeypatch.setenv("CS2C_API_KEY", "sk_live_root_" + "k" * 32)
    monkeypatch.setenv("CS2C_API_BASE", "http://127.0.0.1:9/v1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    store = ("--store", str(tmp_path / "key.json"))
    once = ("rotate", "--once", "--max-age", "30d")
    cases = [
        (ExitStatus.USAGE, "needs --max-age, --before-expiry or", ["rotate", "--once", *store]),
        (ExitStatus.USAGE, "one of the arguments --store --redis is required", [*once]),
        (ExitStatus.USAGE, "NOPE is not set", [*once, *store, "--recovery-token-env", "NOPE"]),
        (ExitStatus.ERROR, "Redis store", [*once, "--redis", f"redis://127.0.0.1:{closed}/0"]),
    ]
    for status, message, args in cases:
        assert main(args) == status, args
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert message in err
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    assert main([*once, "--redis", "redis://127.0.0.1:6379/0"]) == ExitStatus.USAGE
    assert 'pip install "cs2cap-account[redis]"' in capsys.readouterr().err
