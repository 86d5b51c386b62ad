"""A rotator process killed with SIGKILL at each step of the protocol, then restarted.

The fake runs in this process over TCP; each rotator is a subprocess (`_crash_worker.py`)
sharing a `FileKeyStore` with the test. The first run is killed at a step (or after a
seeded random delay, usually mid-request); a second run, not killed, restarts. Always:
the store ends on a key that works and is the account's root key; no second reissue
happened unless the key was truly lost (killed between "reissued" and "saved"), and then
it was recovered through the session token; the child keys exist once each.

The scenarios run concurrently (a few at a time) in one fixture; each test then judges one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import stat
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

import attrs
import pytest

from cs2cap_account import AccountClient, FileKeyStore, KeyRecord
from cs2cap_account.testing import FakeCS2CapAPI

from ._chaos import server_idle
from ._hygiene import leaked_keys
from ._profile import PROFILE, STATS

HERE: Final = Path(__file__).parent
WORKER: Final = HERE / "_crash_worker.py"
STEPS: Final = ("journaled", "reissued", "saved", "verified", "children", "announced")
CHILDREN: Final = ("bot", "dashboard")
BOUND: Final = 60.0  # real seconds any worker may run
PARALLEL: Final = 4
MID_REQUEST_DELAY: Final = 0.05  # each slowed request takes this long at the server
MID_REQUEST_SEEDS: Final = tuple(range(1000, 1000 + PROFILE.killed_mid_request))


@attrs.frozen
class Run:
    """One worker process as it ended."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def steps(self) -> list[str]:
        """The protocol steps it passed, in order."""
        return [line[5:] for line in self.stdout.splitlines() if line.startswith("step ")]

    @property
    def report(self) -> dict[str, Any]:
        """Its final JSON line."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no report:\n{self.stdout}\n{self.stderr}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed


@attrs.frozen
class Outcome:
    """Everything one scenario left behind, for its test to judge."""

    name: str
    first: Run
    restart: Run
    reissues: int
    record: KeyRecord | None
    file_mode: int
    stored_key_active: bool
    stored_is_root: bool
    active_children: Counter[str | None]
    stored_children_active: dict[str, bool]
    announcements: list[dict[str, Any]]
    leaks: list[str]


async def _worker(api: FakeCS2CapAPI, *args: str) -> Run:
    """Run the worker to its end (or its death); it is killed if it outlives `BOUND`."""
    env = {**os.environ, "CRASH_WORKER_RECOVERY_TOKEN": api.session_token.reveal()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def _scenario(name: str, where: Path, kill: list[str], seed: int | None) -> Outcome:
    """Seed a store, run a worker that gets killed, let the fake settle, restart it."""
    await asyncio.to_thread(where.mkdir)
    key_path, events = where / "key.json", where / "events.jsonl"
    async with FakeCS2CapAPI(rate_limits=False) as api:
        for child in CHILDREN:
            api.add_child_key(child)
        store = FileKeyStore(key_path)
        now = dt.datetime.now(dt.timezone.utc)
        first = KeyRecord(generation=1, key=api.root_key, key_id=api.root_key_id, saved_at=now)
        await store.save(first, expected_generation=None)
        args = (api.base_url, str(key_path), str(events))
        if seed is not None:  # slow every request down, so the kill lands in one
            api.faults.chaos(seed=seed, delay=1.0, delay_seconds=MID_REQUEST_DELAY)
        killed = await _worker(api, "rotate", *args, *kill)
        api.faults.stop_chaos()
        await server_idle()  # a request the dead process sent may still be landing
        restarted = await _worker(api, "restart", *args)
        record = await store.load()
        async with AccountClient(session_token=api.session_token, base_url=api.base_url) as admin:
            children = Counter([detail.key.name async for detail in admin.sub_keys.iterate()])
        stored_children = {
            name: api.is_active(entry.key)
            for name, entry in (record.sub_keys if record else {}).items()
        }
        text = await asyncio.to_thread(_read, events)
        announcements = [json.loads(line) for line in text.splitlines() if line.strip()]
        output = "\n".join((killed.stdout, killed.stderr, restarted.stdout, restarted.stderr))
        return Outcome(
            name=name,
            first=killed,
            restart=restarted,
            reissues=api.reissues,
            record=record,
            file_mode=stat.S_IMODE(os.lstat(key_path).st_mode),
            stored_key_active=record is not None and api.is_active(record.key),
            stored_is_root=record is not None and record.key == api.root_key,
            active_children=children,
            stored_children_active=stored_children,
            announcements=announcements,
            leaks=leaked_keys(output, api.issued_secrets()),
        )


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _scenarios(tmp: Path) -> dict[str, tuple[Path, list[str], int | None]]:
    scenarios: dict[str, tuple[Path, list[str], int | None]] = {}
    for step in STEPS:
        scenarios[step] = (tmp / step, ["--kill-at", step], None)
    for seed in MID_REQUEST_SEEDS:
        after = random.Random(seed).uniform(0.02, 0.45)  # noqa: S311 - reproducible, not crypto
        scenarios[f"mid-request-{seed}"] = (
            tmp / f"mid-{seed}",
            ["--kill-after", f"{after:.3f}"],
            seed,
        )
    return scenarios


async def _run_all(tmp: Path) -> dict[str, Outcome]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(name: str, spec: tuple[Path, list[str], int | None]) -> Outcome:
        async with gate:
            return await _scenario(name, *spec)

    scenarios = _scenarios(tmp)
    outcomes = await asyncio.gather(*(one(name, spec) for name, spec in scenarios.items()))
    return {outcome.name: outcome for outcome in outcomes}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every scenario, run once for the module, a few at a time."""
    return asyncio.run(_run_all(tmp_path_factory.mktemp("crash")))


def _judge_common(outcome: Outcome) -> None:
    """What every scenario must end with."""
    name, record, restart = outcome.name, outcome.record, outcome.restart
    assert outcome.leaks == [], f"{name}: worker output showed keys {outcome.leaks}"
    assert restart.returncode == 0, f"{name}: restart failed\n{restart.stdout}\n{restart.stderr}"
    assert restart.report["ok"], f"{name}: get_key() failed after the restart: {restart.report}"
    assert record is not None
    assert record.pending is None, f"{name}: the journal is still open"
    assert record.generation == 2, f"{name}: generation {record.generation}"
    assert outcome.stored_key_active, f"{name}: the stored key does not authenticate"
    assert outcome.stored_is_root, f"{name}: the stored key is not the account's root key"
    assert outcome.file_mode == 0o600, f"{name}: key file mode {outcome.file_mode:o}"
    assert outcome.active_children == Counter(CHILDREN), (
        f"{name}: active child keys by name: {dict(outcome.active_children)}"
    )
    assert outcome.stored_children_active == dict.fromkeys(CHILDREN, True), name
    generations = Counter(entry["generation"] for entry in outcome.announcements)
    assert set(generations) == {2}, f"{name}: announced {outcome.announcements}"


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_a_step_the_restart_finishes_with_one_reissue(
    outcomes: dict[str, Outcome], step: str
) -> None:
    """Killed right after `step`: the first process really died there (SIGKILL, last
    step printed); the restart ends on a working, stored root key with the children
    back. Only a kill between "reissued" and "saved" loses the key; then, and only then,
    a second reissue happens, through the recovery token. Callbacks ran for generation 2
    once, or twice for a kill after "announced" (the announcement is at least once:
    the journal is closed only after it).
    """
    outcome = outcomes[step]
    first = outcome.first
    assert first.returncode == -signal.SIGKILL, f"{step}: {first.returncode}\n{first.stderr}"
    assert first.steps[-1] == step, f"{step}: steps passed {first.steps}"
    _judge_common(outcome)
    lost = step == "reissued"
    assert outcome.reissues == (2 if lost else 1), f"{step}: {outcome.reissues} reissues"
    assert outcome.restart.report["recoveries"] == (1 if lost else 0), outcome.restart.report
    assert outcome.restart.report.get("rotated_again", False) == (step == "journaled")
    fired = len(outcome.announcements)
    assert fired == (2 if step == "announced" else 1), f"{step}: {outcome.announcements}"
    STATS.crashes[step] += 1
    STATS.crash_reissues[step] = outcome.reissues


@pytest.mark.parametrize("seed", MID_REQUEST_SEEDS)
def test_killed_mid_request_the_restart_never_loses_the_key(
    outcomes: dict[str, Outcome], seed: int
) -> None:
    """Killed after a seeded random delay while requests are slow (so usually in the
    middle of one): the restart ends like any other, and a second reissue happened
    only if the restart had to recover a lost key with the token.
    """
    outcome = outcomes[f"mid-request-{seed}"]
    _judge_common(outcome)
    recoveries = outcome.restart.report["recoveries"]
    assert outcome.reissues == 1 + recoveries, f"seed {seed}: {outcome.reissues} reissues"
    assert recoveries <= 1
    assert len(outcome.announcements) >= 1
    killed = outcome.first.returncode == -signal.SIGKILL
    label = f"mid-request ({outcome.first.steps[-1] if outcome.first.steps else 'before any step'})"
    STATS.crashes[label if killed else "mid-request (finished before the kill)"] += 1
    STATS.crash_reissues[f"mid-request-{seed}"] = outcome.reissues
