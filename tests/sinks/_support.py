"""Doubles and helpers for the sink tests: recording sinks, and a gate in front of a server."""

from __future__ import annotations

import asyncio
import contextlib
import enum

import attrs

from cs2cap_account import RotationEvent


@attrs.define
class RecordingSink:
    """A sink that records what it was given, and fails while `down` is set.

    `order` (shared with a callback, say) records "sink" when a publish succeeds.
    """

    name: str = "recording"
    down: bool = False
    events: list[RotationEvent] = attrs.field(factory=list)
    attempts: int = 0
    order: list[str] = attrs.field(factory=list)

    async def publish(self, event: RotationEvent) -> None:
        """Record `event`, or fail like a sink whose service is down."""
        self.attempts += 1
        if self.down:
            raise ConnectionError(f"{self.name} is down (simulated)")
        self.events.append(event)
        self.order.append(self.name)


class Mode(enum.Enum):
    """What the gate does with the next connection."""

    PASS = "pass"
    REFUSE = "refuse"  # accept, then close at once: the service is down
    DROP_RESPONSE = "drop_response"  # forward the request, drop the answer, close


@attrs.define
class Gate:
    """A TCP proxy on loopback in front of `upstream_port`, to take a real service down.

    `mode` applies to each new connection; `drop_responses` connections have their
    answer dropped (the request reached the service; the client never hears back), then
    the mode reverts to PASS. `drop_answer_to` drops the answer to the next request
    starting with those bytes (e.g. `b"POST"`), on any connection, once.
    `connections` counts the connections accepted.
    """

    upstream_port: int
    mode: Mode = Mode.PASS
    drop_responses: int = 0
    drop_answer_to: bytes | None = None
    connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    @property
    def port(self) -> int:
        """The gate's own port."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        """Stop listening and end every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode is Mode.REFUSE:
                return
            drop = self.drop_responses > 0
            if drop:
                self.drop_responses -= 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                poisoned = asyncio.Event()
                upstream = asyncio.ensure_future(self._forward(reader, up_writer, poisoned))
                if drop:
                    await up_reader.read(65536)  # the service answered; nobody hears it
                else:
                    while chunk := await up_reader.read(65536):
                        if poisoned.is_set():
                            break  # the answer to the marked request: dropped, and hung up
                        writer.write(chunk)
                        await writer.drain()
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await upstream
            finally:
                up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, poisoned: asyncio.Event
    ) -> None:
        while chunk := await reader.read(65536):
            marker = self.drop_answer_to
            if marker is not None and chunk.startswith(marker):
                self.drop_answer_to = None
                poisoned.set()
            writer.write(chunk)
            await writer.drain()
