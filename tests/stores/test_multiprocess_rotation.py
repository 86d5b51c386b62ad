"""Several processes on one host, one `FileKeyStore`, one `rotate_now()` each, at once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from cs2cap_account.stores import FileKeyStore, KeyRecord
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import T0, leaked, sha256, touch

HERE = Path(__file__).parent
BOUND = 30.0


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), BOUND)).decode().strip()


async def run_fleet(
    api: FakeCS2CapAPI, key_path: Path, go_file: Path, count: int
) -> list[dict[str, Any]]:
    """Start `count` workers, wait until all are ready, release them together, collect reports.

    Every wait is bounded; on any failure every worker still running is killed.
    """
    env = {**os.environ, "ROTATE_WORKER_ROOT_KEY": api.root_key.reveal()}
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(HERE / "_rotate_worker.py"),
                    api.base_url,
                    str(key_path),
                    str(go_file),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
        assert await asyncio.gather(*(_line(p) for p in procs)) == ["ready"] * count
        touch(go_file)
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), BOUND)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        text = out.decode() + err.decode()
        assert leaked(text) == []
        assert api.root_key.reveal() not in text
        assert proc.returncode == 0, err.decode()
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


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
    key_path = tmp_path / "key.json"
    async with FakeCS2CapAPI(rate_limits=False) as api:
        old_key, old_id = api.root_key, api.root_key_id
        if seeded:
            seed = KeyRecord(generation=1, key=old_key, key_id=old_id, saved_at=T0)
            await FileKeyStore(key_path).save(seed, expected_generation=None)

        reports = await run_fleet(api, key_path, tmp_path / "go", count)

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
