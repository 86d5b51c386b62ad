"""One process of a benchmark fleet: `count` rotators, each with its own client and store.

    python _scale_worker.py REDIS_URL STORE_NAME BASE_URL ROOT_KEY COUNT [CHECK_INTERVAL]

Each rotator has its own `AccountClient` (pacing off, so the server's answers are what
is counted) and its own `RedisKeyStore` on the shared redis-server. Without
CHECK_INTERVAL they only follow the store; with it they also run the schedule
(`max_age` of a year, so no key is ever due: the checks are what costs). Commands come
one per line on stdin and are answered with one JSON line on stdout:

- `reset`: zero the request and 429 counters;
- `report`: {"requests", "refused", "generations", "adopted_at"}: what was sent since the
  last reset, the generation each rotator holds, and, per generation, the wall time at
  which each rotator's callback ran for it.

The first line printed is {"ready": COUNT} once every rotator holds the stored key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import defaultdict

from cs2cap_account import (
    AccountClient,
    Hooks,
    KeyRotator,
    RedisKeyStore,
    RequestEvent,
    ResponseEvent,
    RotationEvent,
)


class Counters:
    """What every client of this process sent, and what its callbacks saw."""

    def __init__(self) -> None:
        self.requests = 0
        self.refused = 0
        self.adopted_at: dict[int, list[float]] = defaultdict(list)

    def on_request(self, _event: RequestEvent) -> None:
        self.requests += 1

    def on_response(self, event: ResponseEvent) -> None:
        if event.status_code == 429:
            self.refused += 1

    def on_rotate(self, event: RotationEvent) -> None:
        self.adopted_at[event.generation].append(time.time())


async def main(argv: list[str]) -> None:
    redis_url, name, base_url, root_key, count_text = argv[:5]
    interval = float(argv[5]) if len(argv) > 5 else None
    count = int(count_text)
    counters = Counters()
    hooks = Hooks(on_request=[counters.on_request], on_response=[counters.on_response])
    rotators: list[KeyRotator] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            client = await stack.enter_async_context(
                AccountClient(
                    root_key, base_url=base_url, requests_per_minute=0, max_retries=0, hooks=hooks
                )
            )
            store = RedisKeyStore(redis_url, name=name, poll_interval=5.0)
            stack.push_async_callback(store.aclose)
            if interval is None:
                rotator = KeyRotator(client, store=store)
            else:
                rotator = KeyRotator(
                    client, store=store, max_age=365 * 86400.0, check_interval=interval
                )
            rotator.on_rotate(counters.on_rotate)
            rotators.append(rotator)
        for rotator in rotators:
            await stack.enter_async_context(rotator)
        probe = RedisKeyStore(redis_url, name=name)
        stack.push_async_callback(probe.aclose)
        stored = await probe.load()
        assert stored is not None
        while any(r.generation != stored.generation for r in rotators):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling rotators' state: nothing to wait on
        print(json.dumps({"ready": count}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "reset":
                counters.requests = counters.refused = 0
                print(json.dumps({"reset": True}), flush=True)
            elif line == "report":
                answer = {
                    "requests": counters.requests,
                    "refused": counters.refused,
                    "generations": [r.generation for r in rotators],
                    "adopted_at": {str(g): t for g, t in counters.adopted_at.items()},
                }
                print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
