"""Run as a script: one process of a fleet sharing a `RedisKeyStore`, driven through Redis.

Usage: python _worker.py REDIS_URL BASE_URL NAME INDEX
   or: python _worker.py --zygote REDIS_URL BASE_URL NAME LOG_DIR  (see `zygote()`)

Each worker has its own `AccountClient`, `KeyRotator` (running: it follows the store's
changes) and `RedisKeyStore`. It reads commands from the list `<NAME>:fleet:cmd:<INDEX>`
and pushes one JSON object per report to the list `<NAME>:fleet:out`:

- `rotate [STEP]`: `rotate_now()`, then `get_key()`; reports `rotated`. With a STEP and
  `FLEET_FAULT_POINTS=1`, the process SIGKILLs itself right after that protocol step:
  `locked` (lease taken, nothing written) or one of the rotator's steps (`journaled`,
  `reissued`, `saved`, `verified`, `children`, `announced`).
- `check NONCE`: `get_key()`; reports `checked`, with the nonce.
- `stop`: stops the rotator, closes everything and exits 0.

Every rotation the rotator announces is reported as `event`, with the monotonic time its
callback ran (comparable across processes on one host). A worker starts once the rotator
has caught up with the store (`ready`), and exits by itself if its parent goes away or no
command comes for two minutes. Environment: `FLEET_ROOT_KEY` (the key to start from; the
store's wins once it holds one), `FLEET_RECOVERY_TOKEN`, `FLEET_LEASE_TTL`,
`FLEET_POLL_INTERVAL`, `FLEET_CHECK_INTERVAL` (seconds), `FLEET_FAULT_POINTS`, and
`FLEET_STORE_URL` / `FLEET_MIN_REPLICAS` for a store on another Redis topology than the
one commands go through (a cluster, a Sentinel-managed primary).

Keys never leave the process: reports carry SHA-256 hashes only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

from redis.asyncio import Redis

from cs2cap_account import (
    AccountClient,
    CS2CapError,
    KeyRotator,
    RedisKeyStore,
    RotationEvent,
    SecretKey,
)
from cs2cap_account.rotation import Step
from cs2cap_account.testing import after_step

IDLE_BOUND = 120.0
FAULTS = os.environ.get("FLEET_FAULT_POINTS") == "1"


def sha256(key: SecretKey) -> str:
    """The hex SHA-256 of a key: comparable without showing it."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()


def die() -> None:
    """End this process at once, as a crash or an OOM kill would."""
    os.kill(os.getpid(), signal.SIGKILL)


class FaultyStore(RedisKeyStore):
    """A store that can kill its process right after taking the lease."""

    kill_when_locked = False

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Take the lease; then die here if armed."""
        async with super().lock():
            if self.kill_when_locked:
                die()
            yield


class Worker:
    """One fleet member: its client, rotator and store, and the command loop."""

    def __init__(self, redis_url: str, base_url: str, name: str, index: int) -> None:
        self.index = index
        self.name = name
        self.control = Redis.from_url(redis_url)
        self.store = FaultyStore(
            os.environ.get("FLEET_STORE_URL") or redis_url,
            name=name,
            lease_ttl=float(os.environ.get("FLEET_LEASE_TTL", "30")),
            poll_interval=float(os.environ.get("FLEET_POLL_INTERVAL", "5")),
            min_replicas=int(os.environ.get("FLEET_MIN_REPLICAS", "0")),
        )
        self.client = AccountClient(
            api_key=os.environ["FLEET_ROOT_KEY"], base_url=base_url, timeout=10.0
        )
        self.rotator = KeyRotator(
            self.client,
            store=self.store,
            recovery_token=os.environ.get("FLEET_RECOVERY_TOKEN") or None,
            check_interval=float(os.environ.get("FLEET_CHECK_INTERVAL", "3600")),
        )
        self.rotator.on_rotate(self.on_rotate)
        self.parent = os.getppid()

    async def report(self, kind: str, **fields: Any) -> None:
        """Push one report for the test to read."""
        body = {"kind": kind, "worker": self.index, "pid": os.getpid(), **fields}
        await self.control.rpush(f"{self.name}:fleet:out", json.dumps(body))

    async def on_rotate(self, event: RotationEvent) -> None:
        """Report each announced rotation, timed when this process learned of it."""
        await self.report(
            "event",
            t=time.monotonic(),
            generation=event.generation,
            reason=event.reason,
            sha256=sha256(event.new_key),
        )

    def arm(self, step: str) -> None:
        """Die right after `step` of the next rotation (only with FLEET_FAULT_POINTS=1)."""
        if not FAULTS:
            raise RuntimeError("fault points are off: set FLEET_FAULT_POINTS=1")
        if step == "locked":
            self.store.kill_when_locked = True
            return

        fatal = Step(step)

        async def die_there(passed: Step) -> None:
            if passed is fatal:
                die()

        after_step(self.rotator, die_there)

    async def state(self) -> dict[str, Any]:
        """What this process holds, after one `get_key()` with it."""
        fields: dict[str, Any] = {}
        try:
            info = await self.client.get_key()
            fields.update(ok=True, key_id=info.id)
        except CS2CapError as exc:
            fields.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        fields.update(
            t=time.monotonic(),
            sha256=sha256(self.rotator.current_key),
            generation=self.rotator.generation,
            recoveries=self.rotator.recoveries,
        )
        return fields

    async def rotate(self, step: str | None) -> None:
        """`rotate_now()` (dying at `step` if given), then report the key in use."""
        if step:
            self.arm(step)
        fields: dict[str, Any] = {}
        try:
            event = await self.rotator.rotate_now()
            fields.update(event_generation=event.generation, reason=event.reason)
        except CS2CapError as exc:
            fields["rotate_error"] = f"{type(exc).__name__}: {exc}"
        fields.update(await self.state())
        await self.report("rotated", **fields)

    async def serve(self) -> int:
        """Catch up, start following, then obey commands until `stop`."""
        await self.rotator.check()
        self.rotator.start()
        await self.report("ready", **(await self.state()))
        commands = f"{self.name}:fleet:cmd:{self.index}"
        idle_since = time.monotonic()
        while True:
            if os.getppid() != self.parent or time.monotonic() - idle_since > IDLE_BOUND:
                return 3
            popped = await self.control.blpop([commands], timeout=0.5)
            if popped is None:
                continue
            idle_since = time.monotonic()
            verb, _, argument = _text(popped[1]).partition(" ")
            if verb == "stop":
                return 0
            if verb == "rotate":
                await self.rotate(argument or None)
            elif verb == "check":
                await self.report("checked", nonce=argument, **(await self.state()))

    async def close(self) -> None:
        """Stop the rotator and close the client, the store and the control connection."""
        await self.rotator.stop()
        await self.client.aclose()
        await self.store.aclose()
        await self.control.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def main(redis_url: str, base_url: str, name: str, index: int) -> int:
    """Run one worker to the end."""
    worker = Worker(redis_url, base_url, name, index)
    try:
        return await worker.serve()
    finally:
        await worker.close()


def run(redis_url: str, base_url: str, name: str, index: int) -> NoReturn:
    """Run one worker, then leave at once (nothing is left to flush or finalise)."""
    code = asyncio.run(main(redis_url, base_url, name, index))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def zygote(redis_url: str, base_url: str, name: str, log_dir: Path) -> NoReturn:
    """Fork workers on request, so each costs milliseconds, not a fresh interpreter.

    Reads one command per line on stdin and answers one line on stdout:
    `spawn INDEX` -> `pid PID` (the worker logs to `LOG_DIR/worker-INDEX.log`);
    `kill PID` -> `ok` (SIGKILL); `wait PID SECONDS` -> `exit CODE` (negative: the
    signal) or `running`. At end of input it kills and reaps every worker and exits.
    Only workers it forked and has not reaped yet are signalled, so a pid is never
    mistaken for another process's.
    """
    children: set[int] = set()
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "spawn":
            log = os.open(log_dir / f"worker-{args[0]}.log", os.O_WRONLY | os.O_CREAT, 0o600)
            pid = os.fork()
            if pid == 0:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                run(redis_url, base_url, name, int(args[0]))
            os.close(log)
            children.add(pid)
            answer = f"pid {pid}"
        elif verb == "kill":
            if int(args[0]) in children:
                os.kill(int(args[0]), signal.SIGKILL)
            answer = "ok"
        elif verb == "wait":
            answer = _wait(int(args[0]), float(args[1]), children)
        else:
            answer = f"unknown {verb}"
        print(answer, flush=True)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os._exit(0)


def _wait(pid: int, bound: float, children: set[int]) -> str:
    """Reap `pid` if it ends within `bound` seconds: `exit CODE`, else `running`."""
    if pid not in children:
        return "exit unknown"
    deadline = time.monotonic() + bound
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            return f"exit {os.waitstatus_to_exitcode(status)}"
        if time.monotonic() > deadline:
            return "running"
        time.sleep(0.005)


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
