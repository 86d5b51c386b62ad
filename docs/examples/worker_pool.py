"""A pool of asyncio workers, each with its own client and its own copy of the root key.

Workers that cannot share one `AccountClient` (each owns a client, or hands the raw key
to another library) learn about a new key through an `on_rotate` callback: the pool
gives every worker the new key the moment a rotation has saved and verified it. A call
sent with the old key before then (the server revokes it the instant it reissues) is
refused with a 401: the worker's client then asks the rotator for the new key
(`client.on_unauthorized`) and sends the call again, so no job fails because of a
rotation.

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
    CS2CapError,
    FileKeyStore,
    Hooks,
    KeyInfo,
    KeyRotator,
    ResponseEvent,
    RotationEvent,
    SecretKey,
)


class Worker:
    """One worker: its own client, its own copy of the rotator's key, and counts of its calls."""

    def __init__(
        self, name: str, owner: AccountClient, rotator: KeyRotator, *, requests_per_minute: int
    ) -> None:
        self.name = name
        self.owner = owner  # the rotator's client
        self.rotator = rotator
        self.calls = 0  # calls started so far
        self.swapped_at = 0  # calls started before the latest key swap
        self.unauthorized: list[int] = []  # the numbers of the calls that met a 401
        self.client = AccountClient(
            rotator.current_key,
            base_url=owner.base_url,
            clock=owner.clock,
            requests_per_minute=requests_per_minute,
            hooks=Hooks(on_response=[self._count_401]),
        )
        self.client.on_unauthorized(self._newer_key)

    def use_key(self, key: SecretKey) -> None:
        """Send `key` from now on (called by the pool's rotation callback)."""
        self.client.use_key(key)
        self.swapped_at = self.calls

    async def _newer_key(self) -> SecretKey | None:
        """After a 401: the rotator's key, once a rotation in flight has switched to it.

        The server revokes the old key before the rotator holds the new one. A call through
        the rotator's own client waits out that moment (or reloads a key another process
        stored), after which `current_key` is the key to send. None lets the 401 stand.
        """
        if self.rotator.current_key == self.client.api_key:
            try:
                await self.owner.get_key()
            except CS2CapError:
                return None
        return self.rotator.current_key

    def _count_401(self, event: ResponseEvent) -> None:
        """The client's response hook: note each call refused with a 401."""
        if event.status_code == 401:
            self.unauthorized.append(self.calls - 1)

    async def call(self) -> KeyInfo:
        """One unit of work."""
        self.calls += 1
        return await self.client.get_key()  # stands in for your own CS2Cap calls

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
            Worker(f"worker-{n}", owner, rotator, requests_per_minute=share) for n in range(size)
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
