"""Run as a script: one rotator process on a shared `FileKeyStore`, which may be killed.

Usage::

    CRASH_WORKER_RECOVERY_TOKEN=<session JWT> python _crash_worker.py \
        MODE BASE_URL KEY_PATH EVENTS_PATH [--kill-at STEP] [--kill-after SECONDS]

The client starts with the key in the store, as a restarted service would. MODE `rotate`
calls `rotate_now()`; MODE `restart` calls `check()`, then `rotate_now()` only if the
store is still at generation 1 (the rotation the crashed process was asked for never
took effect). With `--kill-at STEP` the process kills itself with SIGKILL right after the
rotation protocol's step STEP (through `cs2cap_account.testing.after_step`); with `--kill-after S`,
S seconds after it starts rotating, wherever it is (typically in the middle of a request).

Every callback run appends one JSON line to EVENTS_PATH (fsynced, so it survives the
kill). Prints `step NAME` as each step passes, and at the end one JSON line: the store's
generation, whether `get_key()` works, the recoveries made, and the SHA-256 of the key
in use (never the key itself).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from cs2cap_account import AccountClient, CS2CapError, FileKeyStore, KeyRotator, RotationEvent
from cs2cap_account.rotation import Step
from cs2cap_account.testing import after_step

TOKEN_ENV = "CRASH_WORKER_RECOVERY_TOKEN"


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


async def main(args: argparse.Namespace) -> int:
    """Rotate (or restart) once, maybe dying on the way; 0 when done, 1 on an error."""
    store = FileKeyStore(args.key_path)
    record = await store.load()
    assert record is not None, "the test seeds the store"
    report: dict[str, Any] = {}
    async with AccountClient(record.key, base_url=args.base_url, timeout=5.0) as client:
        rotator = KeyRotator(
            client,
            store=store,
            recovery_token=os.environ[TOKEN_ENV],
            recreate_sub_keys=True,
        )

        def note(event: RotationEvent) -> None:
            entry = {"pid": os.getpid(), "generation": event.generation, "reason": event.reason}
            _append(args.events_path, json.dumps(entry))

        async def report_and_maybe_die(step: Step) -> None:
            print(f"step {step.value}", flush=True)
            if step.value == args.kill_at:
                _die()

        rotator.on_rotate(note)
        after_step(rotator, report_and_maybe_die)  # the crash-test seam
        if args.kill_after is not None:
            asyncio.get_running_loop().call_later(args.kill_after, _die)
        try:
            if args.mode == "rotate":
                await rotator.rotate_now("crash test")
            else:
                await rotator.check()
                stored = await store.load()
                if stored is not None and stored.generation == 1:
                    report["rotated_again"] = True
                    await rotator.rotate_now("crash test, again")
        except CS2CapError as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
        try:
            await client.get_key()
            report["ok"] = True
        except CS2CapError as exc:
            report.update(ok=False, get_error=f"{type(exc).__name__}: {exc}")
        stored = await store.load()
        report["generation"] = stored.generation if stored else None
        report["recoveries"] = rotator.recoveries
        report["key_sha256"] = hashlib.sha256(rotator.current_key.reveal().encode()).hexdigest()
        await rotator.stop()
    print(json.dumps(report), flush=True)
    return 1 if "error" in report else 0


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["rotate", "restart"])
    parser.add_argument("base_url")
    parser.add_argument("key_path", type=Path)
    parser.add_argument("events_path", type=Path)
    parser.add_argument("--kill-at")
    parser.add_argument("--kill-after", type=float)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_arguments(sys.argv[1:]))))
