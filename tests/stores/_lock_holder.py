"""Run as a script: hold a `FileKeyStore`'s lock until a release file appears.

Usage: python _lock_holder.py KEY_PATH RELEASE_FILE

Prints `locked` once the lock is held, `releasing` just before letting go and `released`
after; exits 2 if the release file does not appear within 30 seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from cs2cap_account.stores import FileKeyStore

POLL = 0.01
BOUND = 30.0


def _exists(path: Path) -> bool:
    return path.exists()


async def main(key_path: Path, release_file: Path) -> int:
    """Hold the lock until `release_file` exists; 0 on success, 2 on timeout."""
    store = FileKeyStore(key_path)
    async with store.lock():
        print("locked", flush=True)
        deadline = time.monotonic() + BOUND
        while not _exists(release_file):
            if time.monotonic() > deadline:
                print("timeout", flush=True)
                return 2
            await asyncio.sleep(POLL)
        print("releasing", flush=True)
    print("released", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]))))
