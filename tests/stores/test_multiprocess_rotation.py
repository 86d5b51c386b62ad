"""Several processes on one host sharing one `FileKeyStore` while the root key rotates."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cs2cap_account.stores import FileKeyStore, KeyRecord
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import T0, leaked, sha256, touch

HERE = Path(__file__).parent
BOUND = 30.0

Process = asyncio.subprocess.Process
Start = Callable[[str, Path], Awaitable[Process]]


async def _line(proc: Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), BOUND)).decode().strip()


@asynccontextmanager
async def workers(api: FakeCS2CapAPI, key_path: Path) -> AsyncIterator[Start]:
    """Start workers (`_rotate_worker.py`) on `key_path`; kill any still running at the end.

    `await start(mode, go_file)` returns a worker that has printed `ready`. The root key
    reaches the workers through their environment, never their command line.
    """
    env = {**os.environ, "ROTATE_WORKER_ROOT_KEY": api.root_key.reveal()}
    started: list[Process] = []

    async def start(mode: str, go_file: Path) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "_rotate_worker.py"),
            mode,
            api.base_url,
            str(key_path),
            str(go_file),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        started.append(proc)
        assert await _line(proc) == "ready"
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def report_of(api: FakeCS2CapAPI, proc: Process) -> dict[str, Any]:
    """Wait (bounded) for a worker to finish; its JSON report, once checked for leaks."""
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    text = out.decode() + err.decode()
    assert leaked(text) == []
    assert api.root_key.reveal() not in text
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def seed(key_path: Path, api: FakeCS2CapAPI) -> None:
    """Put the fake's current root key in the store as generation 1."""
    record = KeyRecord(generation=1, key=api.root_key, key_id=api.root_key_id, saved_at=T0)
    await FileKeyStore(key_path).save(record, expected_generation=None)


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("seeded", [False, True], ids=["empty-store", "seeded-store"])
async def test_processes_rotating_together_reissue_once_and_agree(
    tmp_path: Path, count: int, seeded: bool
) -> None:
    """Processes sharing a key file and calling `rotate_now()` together reissue once.

    The lock lets one process reissue; the others pick its key up from the file. So every
    process ends on the same key, that key authenticates (their `get_key()` succeeded),
    the old one does not, and the file holds the new key with its journal closed. Run
    against an empty store (the first process in initialises it) and a seeded one.
    """
    key_path, go = tmp_path / "key.json", tmp_path / "go"
    async with FakeCS2CapAPI(rate_limits=False) as api:
        old_key, old_id = api.root_key, api.root_key_id
        if seeded:
            await seed(key_path, api)

        async with workers(api, key_path) as start:
            procs = [await start("rotate", go) for _ in range(count)]
            touch(go)
            reports = await asyncio.gather(*(report_of(api, p) for p in procs))

        stored = await FileKeyStore(key_path).load()
        assert stored is not None
        assert api.reissues == 1
        assert [r.get("rotate_error") for r in reports] == [None] * count
        assert all(r["ok"] for r in reports), reports
        assert {r["key_sha256"] for r in reports} == {sha256(stored.key)}
        assert {r["key_id"] for r in reports} == {stored.key_id}
        assert {r["generation"] for r in reports} == {2}
        reasons = sorted(r["reason"] for r in reports)
        assert reasons == sorted(["manual"] + ["adopted"] * (count - 1))
        assert api.is_active(stored.key)
        assert stored.key == api.root_key
        assert not api.is_active(old_key)
        assert stored.generation == 2
        assert stored.pending is None
        assert stored.key_id != old_id


async def test_a_process_that_did_not_rotate_picks_up_the_new_key(tmp_path: Path) -> None:
    """A process still holding the revoked key recovers on its next call, without reissuing.

    One process rotates; another, started with the old key, then calls `get_key()`: the
    401 makes it reload the key from the shared file and retry, so the call succeeds on
    the new key and the API saw exactly one reissue.
    """
    key_path = tmp_path / "key.json"
    async with FakeCS2CapAPI(rate_limits=False) as api:
        await seed(key_path, api)
        old_key = api.root_key
        async with workers(api, key_path) as start:
            follower = await start("follow", tmp_path / "go-follow")
            rotator = await start("rotate", tmp_path / "go-rotate")
            touch(tmp_path / "go-rotate")
            rotated = await report_of(api, rotator)
            assert not api.is_active(old_key)
            touch(tmp_path / "go-follow")
            followed = await report_of(api, follower)

        stored = await FileKeyStore(key_path).load()
        assert stored is not None
        assert api.reissues == 1
        assert rotated["ok"]
        assert rotated["reason"] == "manual"
        assert followed["ok"], followed
        assert followed["key_sha256"] == rotated["key_sha256"] == sha256(stored.key)
        assert followed["key_id"] == stored.key_id
        assert api.is_active(stored.key)
