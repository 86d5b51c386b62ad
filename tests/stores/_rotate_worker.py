"""Run as a script: one process of a fleet sharing a `FileKeyStore`, acting on cue.

Usage: ROTATE_WORKER_ROOT_KEY=<root key> python _rotate_worker.py MODE BASE_URL KEY_PATH GO_FILE

Builds a client and a `KeyRotator` on the file store, prints `ready`, waits for GO_FILE
(polled every 10 ms, at most 30 s), then in MODE `rotate` calls `rotate_now()`; in MODE
`follow` it does not. Either way it then makes one `get_key()` call and prints one JSON
line: the id and SHA-256 of the key now in use (never the key), whether the call
succeeded, and the rotation event's generation and reason. Exits 0 unless it timed out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cs2cap_account import AccountClient, CS2CapError, FileKeyStore, KeyRotator

POLL = 0.01
BOUND = 30.0
KEY_ENV = "ROTATE_WORKER_ROOT_KEY"


def _sha256(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _exists(path: Path) -> bool:
    return path.exists()


async def main(mode: str, base_url: str, key_path: Path, go_file: Path) -> int:
    """Act once on cue and report; 0 when done, 2 if the go-file never appeared."""
    report: dict[str, Any] = {}
    async with AccountClient(api_key=os.environ[KEY_ENV], base_url=base_url) as client:
        store = FileKeyStore(key_path)
        rotator = KeyRotator(client, store=store)
        print("ready", flush=True)
        deadline = time.monotonic() + BOUND
        while not _exists(go_file):
            if time.monotonic() > deadline:
                print(json.dumps({"error": "no go-file"}), flush=True)
                return 2
            await asyncio.sleep(POLL)
        if mode == "rotate":
            try:
                event = await rotator.rotate_now()
                report.update(generation=event.generation, reason=event.reason)
            except CS2CapError as exc:
                report["rotate_error"] = f"{type(exc).__name__}: {exc}"
        try:
            info = await client.get_key()
            report.update(ok=True, key_id=info.id)
        except CS2CapError as exc:
            report.update(ok=False, get_error=f"{type(exc).__name__}: {exc}")
        in_use = rotator.current_key
        report["key_sha256"] = _sha256(in_use.reveal())
        await rotator.stop()
        await store.aclose()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    mode, base_url, key_path, go_file = sys.argv[1:5]
    sys.exit(asyncio.run(main(mode, base_url, Path(key_path), Path(go_file))))
