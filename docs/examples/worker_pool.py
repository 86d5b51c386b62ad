"""A pool of asyncio workers, each with its own client and its own copy of the root key.

Workers that cannot share one `AccountClient` (each owns a client, or hands the raw key
to another library) learn about a new key through an `on_rotate` callback: the pool
gives every worker the new key the moment a rotation has saved and verified it. A call
that was already on its way with the old key meets a 401; the worker waits for the swap
and sends it again, so no job fails because of a rotation.

Run it against the real API (Ctrl-C to stop):

    CS2C_API_KEY=sk_live_root_... python worker_pool.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FileKeyStore,
    KeyInfo,
    KeyRotator,
    RotationEvent,
    SecretKey,
)

SWAP_TIMEOUT = 60.0  # seconds a worker waits for the new key after a 401


class Worker:
    """One worker: its own client, its own copy of the key, and counts of its calls."""

    def __init__(self, name: str, client: AccountClient) -> None:
        self.name = name
        self.client = client
        self.calls = 0  # calls started so far
        self.swapped_at = 0  # calls started before the latest key swap
        self.unauthorized: list[int] = []  # the numbers of the calls that met a 401
        self._swapped = asyncio.Event()

    def use_key(self, key: SecretKey) -> None:
        """Send `key` from now on (called by the pool's rotation callback)."""
        self.client.use_key(key)
        self.swapped_at = self.calls
        self._swapped.set()

    async def call(self) -> KeyInfo:
        """One unit of work. A 401 means a rotation revoked our key: wait for the new one."""
        number = self.calls
        self.calls += 1
        self._swapped.clear()
        try:
            return await self.client.get_key()  # stands in for your own CS2Cap calls
        except AuthenticationError:
            self.unauthorized.append(number)
            await asyncio.wait_for(self._swapped.wait(), SWAP_TIMEOUT)
            return await self.client.get_key()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set."""
        while not stop.is_set():
            await self.call()


class WorkerPool:
    """`size` workers, kept on the rotator's current key by an `on_rotate` callback."""

    def __init__(
        self, owner: AccountClient, rotator: KeyRotator, *, size: int, requests_per_minute: int
    ) -> None:
        # Every worker sends the same key, so they split its per-minute budget, leaving
        # one share for the rotator's own calls.
        share = max(1, requests_per_minute // (size + 1))
        self.workers = [
            Worker(
                f"worker-{n}",
                AccountClient(
                    rotator.current_key,
                    base_url=owner.base_url,
                    clock=owner.clock,
                    requests_per_minute=share,
                ),
            )
            for n in range(size)
        ]
        rotator.on_rotate(self.swap_keys)

    @classmethod
    async def create(cls, owner: AccountClient, rotator: KeyRotator, *, size: int) -> WorkerPool:
        """A pool sized to the key's enforced rate, which `owner.get_key()` reports."""
        info = await owner.get_key()
        return cls(
            owner, rotator, size=size, requests_per_minute=info.effective_rate_requests_per_minute
        )

    def swap_keys(self, event: RotationEvent) -> None:
        """The rotation callback: hand every worker the new key."""
        for worker in self.workers:
            worker.use_key(event.new_key)

    async def run(self, stop: asyncio.Event) -> None:
        """Run every worker until `stop` is set; a worker's error ends the pool."""
        await asyncio.gather(*(worker.run(stop) for worker in self.workers))

    async def aclose(self) -> None:
        """Close every worker's client."""
        for worker in self.workers:
            await worker.client.aclose()


async def main() -> None:
    """Run four workers and a scheduled rotator until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AccountClient() as owner:  # CS2C_API_KEY, and CS2C_API_BASE if set
        rotator = KeyRotator(
            owner,
            store=FileKeyStore(os.environ.get("CS2C_KEY_STORE", "cs2cap-key.json")),
            max_age=dt.timedelta(days=30),
            recovery_token=os.environ.get("CS2C_SESSION_TOKEN"),
        )
        await rotator.check()  # adopt a key another process stored; rotate now if due
        pool = await WorkerPool.create(owner, rotator, size=int(os.environ.get("WORKERS", "4")))
        try:
            async with rotator:  # the schedule: checks now, then hourly
                await pool.run(stop)
        finally:
            await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
