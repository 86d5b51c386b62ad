"""A service whose workers and scheduled key rotation run in one `asyncio.TaskGroup`.

The rotator's `run()` is one task of the group, beside the workers. The workers use
`with_options()` copies of one `AccountClient`, which share its credential: a rotation
switches them all at once. A call that was already on its way with the old key when the
server revoked it is refused with a 401; the client waits until the rotation has switched
it to the new key and sends it again, so the workers never see the 401. On shutdown every
task is cancelled and `rotator.stop()` waits for a rotation in flight: a reissue and the
save of its key are never cut short.

Needs Python 3.11+ (`asyncio.TaskGroup`). Run it against the real API (Ctrl-C to stop):

    CS2C_API_KEY=sk_live_root_... python taskgroup_service.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import sys

from cs2cap_account import AccountClient, FileKeyStore, KeyRotator, RotationEvent


@dataclasses.dataclass
class Stats:
    """What the workers did: calls made, and each root key id they saw, in order."""

    calls: int = 0
    key_ids: list[str] = dataclasses.field(default_factory=list)


async def work(client: AccountClient, stats: Stats, *, interval: float) -> None:
    """One worker: a CS2Cap call every `interval` seconds, until cancelled."""
    while True:
        info = await client.get_key()  # stands in for your own CS2Cap calls
        stats.calls += 1
        if info.id not in stats.key_ids:
            stats.key_ids.append(info.id)
        await client.clock.sleep(interval)


async def serve(
    client: AccountClient,
    rotator: KeyRotator,
    stop: asyncio.Event,
    *,
    workers: int = 4,
    interval: float = 1.0,
    stats: Stats | None = None,
) -> Stats:
    """Run `workers` workers and the rotator's schedule in one TaskGroup until `stop`.

    Returns the workers' `Stats`; pass your own to watch it while the service runs.
    """
    if sys.version_info < (3, 11):
        raise RuntimeError("asyncio.TaskGroup needs Python 3.11 or later")
    stats = stats if stats is not None else Stats()
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(rotator.run(), name="cs2cap-key-rotation")]
            tasks += [
                group.create_task(work(client.with_options(timeout=10), stats, interval=interval))
                for _ in range(workers)
            ]
            await stop.wait()
            for task in tasks:
                task.cancel()
    finally:
        await rotator.stop()  # waits for a rotation in flight to end
    return stats


async def main() -> None:
    """Serve until SIGINT or SIGTERM, rotating the root key when it is 30 days old."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AccountClient() as client:  # CS2C_API_KEY, and CS2C_API_BASE if set
        rotator = KeyRotator(
            client,
            store=FileKeyStore(os.environ.get("CS2C_KEY_STORE", "cs2cap-key.json")),
            max_age=dt.timedelta(days=30),
            recovery_token=os.environ.get("CS2C_SESSION_TOKEN"),
        )

        @rotator.on_rotate
        def announce(event: RotationEvent) -> None:
            print(f"rotated to {event.key_id} ({event.reason}, generation {event.generation})")

        stats = await serve(client, rotator, stop)
    print(f"stopped after {stats.calls} calls")


if __name__ == "__main__":
    asyncio.run(main())
