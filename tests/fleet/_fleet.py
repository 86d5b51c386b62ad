"""Driving a fleet of `_worker.py` processes, and watching the fake API's reissues.

Every wait here is bounded, and `Fleet.close()` stops (or kills) every process it started,
whatever happened before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

from cs2cap_account import KeyStore
from cs2cap_account.testing import FakeCS2CapAPI

if TYPE_CHECKING:
    from redis.asyncio import Redis

WORKER = Path(__file__).with_name("_worker.py")
BOUND = 20.0

# A key printed in full: its type prefix followed by a long run of its random part.
# (A `SecretKey` shows the prefix, an ellipsis and the last 4 characters only.)
PLAINTEXT_KEY = re.compile(r"sk_live_(?:root|child)_[A-Za-z0-9_-]{12,}")

Report = dict[str, Any]


@attrs.define
class Reissue:
    """One root-key reissue the fake carried out."""

    at: float  # time.monotonic() when the fake answered
    by_session: bool  # made with the session JWT (a recovery), not with an API key
    store_had_live_key: bool | None  # for a recovery: did the store hold a working key?


@attrs.define
class ReissueLog:
    """Watches `POST /account/key/reissue` on a fake, as an aiohttp middleware.

    For a reissue made with the session JWT (the rotator's recovery), it first looks
    whether the store held a key that still worked, current or kept aside: a recovery is
    justified only if it did not.
    """

    api: FakeCS2CapAPI
    store: KeyStore
    reissues: list[Reissue] = attrs.field(factory=list)

    def install(self) -> None:
        """Add the middleware; call before the fake starts."""
        self.api.app.middlewares.append(self._middleware)

    async def _store_has_live_key(self) -> bool:
        record = await self.store.load()
        if record is None:
            return False
        return any(self.api.is_active(key) for key in (record.key, *record.kept_aside))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or not request.path.endswith("/account/key/reissue"):
            return await handler(request)
        by_session = self.api.session_token.reveal() in request.headers.get("Authorization", "")
        live = await self._store_has_live_key() if by_session else None
        response = await handler(request)
        if response.status == 200:
            self.reissues.append(Reissue(time.monotonic(), by_session, live))
        return response


class Zygote:
    """The `_worker.py --zygote` process, which forks workers for a fleet on request."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._turn = asyncio.Lock()

    @classmethod
    async def start(
        cls, redis_url: str, api: FakeCS2CapAPI, name: str, log_dir: Path, env: Mapping[str, str]
    ) -> Zygote:
        """Start the zygote (one interpreter start, for any number of workers)."""
        with (log_dir / "zygote.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), "--zygote", redis_url, api.base_url, name,
                str(log_dir), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env=dict(env),
            )  # fmt: skip
        return cls(proc)

    async def ask(self, line: str, bound: float = BOUND) -> str:
        """Send one command line; its one-line answer."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        async with self._turn:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
            answer = await asyncio.wait_for(self.proc.stdout.readline(), bound)
        if not answer:
            raise AssertionError(f"the zygote ended (exit {self.proc.returncode})")
        return answer.decode().strip()

    async def close(self) -> None:
        """End of input: it kills and reaps its workers and exits; killed if it hangs."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


@attrs.define
class Worker:
    """One worker process, started directly or forked by the zygote."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    zygote: Zygote | None = None
    pid: int = 0
    returncode: int | None = None

    async def kill(self) -> None:
        """SIGKILL it now (if it is still running)."""
        if self.returncode is not None:
            return
        if self.proc is not None:
            if self.proc.returncode is None:
                self.proc.send_signal(signal.SIGKILL)
        else:
            assert self.zygote is not None
            await self.zygote.ask(f"kill {self.pid}")

    async def wait(self, bound: float) -> int:
        """Its exit code (negative: killed by that signal), waiting at most `bound` s."""
        if self.returncode is None:
            if self.proc is not None:
                self.returncode = await asyncio.wait_for(self.proc.wait(), bound)
            else:
                assert self.zygote is not None
                answer = await self.zygote.ask(f"wait {self.pid} {bound}", bound + 5)
                if answer == "running":
                    raise TimeoutError(f"worker {self.index} still runs after {bound} s")
                self.returncode = int(answer.removeprefix("exit "))
        return self.returncode


class Fleet:
    """Worker processes sharing one store name, commanded and heard through Redis.

    Workers are started as fresh interpreters (`create_subprocess_exec`), or, with
    `forked=True`, forked by one zygote process, which makes replacing a killed worker
    cost milliseconds.
    """

    def __init__(
        self,
        redis: Redis,
        redis_url: str,
        api: FakeCS2CapAPI,
        name: str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        forked: bool = False,
    ) -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.api = api
        self.name = name
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "FLEET_ROOT_KEY": api.root_key.reveal(),
            "FLEET_RECOVERY_TOKEN": api.session_token.reveal(),
            **(env or {}),
        }
        self.forked = forked
        self.zygote: Zygote | None = None
        self.workers: dict[int, Worker] = {}
        self.live: list[int] = []
        self._next = 0
        self._unread: list[Report] = []

    # -- processes -------------------------------------------------------------------------

    async def spawn(self) -> int:
        """Start one worker (not waiting for it to be ready); its index."""
        index = self._next
        self._next += 1
        if self.forked:
            if self.zygote is None:
                self.zygote = await Zygote.start(
                    self.redis_url, self.api, self.name, self.log_dir, self.env
                )
            answer = await self.zygote.ask(f"spawn {index}")
            worker = Worker(index, zygote=self.zygote, pid=int(answer.removeprefix("pid ")))
        else:
            with (self.log_dir / f"worker-{index}.log").open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, str(WORKER), self.redis_url, self.api.base_url, self.name,
                    str(index), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                    env=self.env,
                )  # fmt: skip
            worker = Worker(index, proc=proc, pid=proc.pid)
        self.workers[index] = worker
        self.live.append(index)
        return index

    async def start(self, count: int) -> list[int]:
        """Start `count` workers and wait until each is ready and subscribed."""
        indices = [await self.spawn() for _ in range(count)]
        await self.ready(indices)
        return indices

    async def ready(self, indices: list[int], bound: float = BOUND) -> list[Report]:
        """Wait for the `ready` report of each of `indices`, and for their subscriptions.

        Subscriptions are counted on the command server, so only for a store on it (not
        for one elsewhere, `FLEET_STORE_URL`).
        """
        reports = [await self.report("ready", index, bound=bound) for index in indices]
        if not self.env.get("FLEET_STORE_URL"):
            await self.subscribed(len(self.live), bound=bound)
        return reports

    async def subscribed(self, count: int, bound: float = BOUND) -> None:
        """Wait until `count` subscribers listen on the store's channel."""
        channel = f"{{{self.name}}}:changes"
        deadline = time.monotonic() + bound
        while True:
            numsub = dict(await self.redis.pubsub_numsub(channel))
            if numsub.get(channel.encode(), 0) >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} subscribers expected, {numsub} after {bound} s")
            await asyncio.sleep(0.01)

    async def kill(self, index: int) -> None:
        """SIGKILL one worker now."""
        await self.workers[index].kill()

    async def exited(self, index: int, bound: float = BOUND) -> int:
        """Wait for one worker's exit; its exit code. It leaves the live set."""
        code = await self.workers[index].wait(bound)
        if index in self.live:
            self.live.remove(index)
        return code

    async def close(self) -> None:
        """Stop every worker (politely, then by SIGKILL) and the zygote, always."""
        try:
            if self.live:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for index in self.live:
                        pipe.rpush(self._commands(index), "stop")
                    await pipe.execute()
                for index in list(self.live):
                    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                        await self.exited(index, bound=5.0)
        finally:
            try:
                for worker in self.workers.values():
                    if worker.returncode is None and worker.proc is not None:
                        worker.proc.kill()
                        await worker.proc.wait()
            finally:
                if self.zygote is not None:
                    await self.zygote.close()

    def leaks(self) -> list[str]:
        """Keys the fake ever issued (and the session JWT) that appear in the workers'
        output, redacted; plus anything else shaped like a key printed in full.
        """
        logs = self.logs()
        found = [str(key) for key in self.api.issued_secrets() if key.reveal() in logs]
        return found + PLAINTEXT_KEY.findall(logs)

    def logs(self) -> str:
        """Everything the workers (and the zygote) wrote."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )

    # -- commands and reports --------------------------------------------------------------

    def _commands(self, index: int) -> str:
        return f"{self.name}:fleet:cmd:{index}"

    async def send(self, indices: list[int], command: str) -> None:
        """Give `command` to each of `indices` at the same moment (one pipeline)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for index in indices:
                pipe.rpush(self._commands(index), command)
            await pipe.execute()

    async def report(self, kind: str, worker: int | None = None, bound: float = BOUND) -> Report:
        """The next report of `kind` (from `worker`, if given); others stay unread."""
        return (await self.reports(kind, 1, lambda r: worker in (None, r["worker"]), bound))[0]

    async def received(self, kind: str) -> list[Report]:
        """Every report of `kind` pushed so far and not yet read, without waiting."""
        while (popped := await self.redis.lpop(f"{self.name}:fleet:out")) is not None:
            assert isinstance(popped, bytes)
            self._unread.append(json.loads(popped))
        return [report for report in self._unread if report["kind"] == kind]

    async def reports(
        self,
        kind: str,
        count: int,
        where: Callable[[Report], bool] = lambda _r: True,
        bound: float = BOUND,
    ) -> list[Report]:
        """The next `count` reports of `kind` matching `where`, in arrival order."""
        deadline = time.monotonic() + bound
        found: list[Report] = []
        while True:
            for report in list(self._unread):
                if len(found) < count and report["kind"] == kind and where(report):
                    self._unread.remove(report)
                    found.append(report)
            if len(found) == count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(found)} of {count} {kind!r} reports in {bound} s")
            popped = await self.redis.blpop([f"{self.name}:fleet:out"], timeout=min(left, 1.0))
            if popped is not None:
                self._unread.append(json.loads(popped[1]))

    async def states(self, indices: list[int], bound: float = BOUND) -> list[Report]:
        """Ask each of `indices` for a fresh `get_key()` and what it holds."""
        nonce = uuid.uuid4().hex
        await self.send(indices, f"check {nonce}")
        return await self.reports("checked", len(indices), lambda r: r["nonce"] == nonce, bound)
