"""`InProcessTransport`: the fake's own aiohttp.web application, called without a socket.

    AccountClient ─> InProcessTransport.send ─> a web.Request, as aiohttp's server parses it
                 ─> the fake's app: router, middleware, handlers, faults ─> web.Response

The request runs through the same router, middleware and handlers as over TCP, so the
two paths cannot drift; only what a socket does is played here, the way aiohttp's client
and server would play it:

- a fault that closes the connection (`drop`, `drop_after_commit`) closes the
  `InProcessConnection` standing in for the socket; the client then sees
  `APIConnectionError` with `request_sent=True`, after resending a GET or DELETE once,
  as aiohttp's client does after a disconnect;
- a `delay` fault waits on the transport's clock; an attempt whose `timeout` runs out
  first raises `APITimeoutError`, and the handler still finishes later, as the fake's
  server finishes a request whose client gave up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final, cast

import attrs
from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._transport import Response, describe_request
from cs2cap_account.errors import APIConnectionError, APITimeoutError

__all__ = ["InProcessConnection", "InProcessTransport"]

logger: Final = logging.getLogger("cs2cap_account.testing")

# aiohttp's client sends a request with these methods again, once, on a fresh connection
# when the server closed the connection without answering (RFC 9112, section 9.3.1).
RESENT_AFTER_A_DROP: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_PEER: Final = ("127.0.0.1", 0)


@attrs.define
class InProcessConnection:
    """The connection of one in-process exchange, as the fake's handlers see it.

    It stands where a `web.Request` has its server protocol and asyncio transport:
    `close()` is how a fault drops the connection, and `delay()` is how a fault waits, on
    the transport's clock and within the client's timeout.
    """

    _clock: Clock
    _timeout: float
    _gave_up: asyncio.Future[Any]
    closed: bool = attrs.field(init=False, default=False)
    # What a web.Request reads from its server protocol.
    ssl_context: None = attrs.field(init=False, default=None)
    peername: tuple[str, int] = attrs.field(init=False, default=_PEER)
    sockname: tuple[str, int] = attrs.field(init=False, default=_PEER)
    max_field_size: int = attrs.field(init=False, default=8190)
    max_line_length: int = attrs.field(init=False, default=8190)
    max_headers: int = attrs.field(init=False, default=128)

    @property
    def transport(self) -> InProcessConnection:
        """The protocol's transport: this connection too."""
        return self

    def close(self) -> None:
        """Drop the connection: the client gets no response."""
        self.closed = True

    def is_closing(self) -> bool:
        """Whether `close()` was called."""
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Socket details a request may ask for: both ends are the loopback address."""
        return _PEER if name in ("peername", "sockname") else default

    async def delay(self, seconds: float) -> None:
        """Wait `seconds`; if the client's timeout runs out first, let it give up then."""
        if seconds < self._timeout:
            await self._clock.sleep(seconds)
            return
        await self._clock.sleep(self._timeout)
        if not self._gave_up.done():
            self._gave_up.set_result(None)
        await self._clock.sleep(seconds - self._timeout)


@attrs.define
class InProcessTransport:
    """A `cs2cap_account` transport that hands each request to a fake's application.

    Get one from `FakeCS2CapAPI.transport()`; the fake need not be started. Scheme and
    host of the URL are ignored; its path and query are routed as over TCP. `clock`
    (default: real time) is what `delay` faults and the attempt's timeout run on: pass
    the test's `FakeClock` and a delay costs no real time.
    """

    _app: web.Application
    _clock: Clock = attrs.field(factory=SystemClock)
    _closed: bool = attrs.field(init=False, default=False)
    # Handlers still running after their client gave up (a delay past the timeout).
    _late: set[asyncio.Future[Any]] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        # Freezing computes which middlewares run; the TCP server does it when it starts.
        self._app.freeze()

    @property
    def closed(self) -> bool:
        """True once `aclose()` ran."""
        return self._closed

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Hand one request to the fake and return its response, or raise as aiohttp would."""
        if self._closed:
            raise RuntimeError("this AccountClient is closed")
        target = URL(url)
        if params:
            target = target.extend_query(params)
        response = await self._exchange(method, target, headers, body, timeout)
        if response is None and method in RESENT_AFTER_A_DROP:
            response = await self._exchange(method, target, headers, body, timeout)
        if response is None:
            raise APIConnectionError(
                f"{describe_request(method, url)}: connection failed: Server disconnected"
            )
        return _response(response)

    async def _exchange(
        self,
        method: str,
        target: URL,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> web.StreamResponse | None:
        """One request on one connection: the response, or None if the fake dropped it."""
        loop = asyncio.get_running_loop()
        gave_up: asyncio.Future[Any] = loop.create_future()
        connection = InProcessConnection(self._clock, timeout, gave_up)
        message = _message(method, target, headers)
        handling: asyncio.Future[Any] = asyncio.ensure_future(
            _handle(self._app, message, _payload(body, loop), connection)
        )
        try:
            await asyncio.wait((handling, gave_up), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not handling.done():  # timed out or cancelled: the fake carries on regardless
                self._late.add(handling)
                handling.add_done_callback(self._late_done)
        if gave_up.done() or not handling.done():  # on a virtual clock both may be done
            raise APITimeoutError(
                f"{describe_request(method, str(target))}: no response within {timeout:g} s"
            )
        response: web.StreamResponse = handling.result()
        return None if connection.closed else response

    def _late_done(self, handling: asyncio.Future[Any]) -> None:
        self._late.discard(handling)
        if not handling.cancelled() and handling.exception() is not None:
            logger.error("the fake failed a request after its client gave up")

    async def aclose(self) -> None:
        """Refuse further requests. Safe to call more than once; the fake keeps running."""
        self._closed = True


def _message(method: str, target: URL, headers: Mapping[str, str]) -> RawRequestMessage:
    """The request line and headers, as aiohttp's HTTP parser hands them to the server."""
    proxy = CIMultiDictProxy(CIMultiDict(headers))
    raw = tuple((name.encode(), value.encode()) for name, value in proxy.items())
    path = target.raw_path_qs
    return RawRequestMessage(
        method, path, HttpVersion11, proxy, raw, False, None, False, False, URL(path)
    )


async def _handle(
    app: web.Application,
    message: RawRequestMessage,
    payload: StreamReader,
    connection: InProcessConnection,
) -> web.StreamResponse:
    """Route and handle the request as the fake's server does, a crash included (500)."""
    loop = asyncio.get_running_loop()
    # No payload writer: the fake's handlers return their responses, never stream them.
    request = web.Request(
        message,
        payload,
        cast("Any", connection),
        cast("Any", None),
        cast("Any", asyncio.current_task()),
        loop,
    )
    try:
        return await app._handle(request)  # aiohttp's own request pipeline
    except Exception:
        logger.exception("the fake's handler raised")
        return web.Response(status=500, text="500 Internal Server Error")


class _NoFlowControl:
    """A protocol for a `StreamReader` fed all at once: reading is never paused."""

    def pause_reading(self, **_: object) -> None:
        """Nothing to pause."""

    def resume_reading(self, **_: object) -> None:
        """Nothing to resume."""


def _payload(body: bytes | None, loop: asyncio.AbstractEventLoop) -> StreamReader:
    """The request body as the stream a `web.Request` reads it from."""
    reader = StreamReader(_NoFlowControl(), 2**16, loop=loop)  # type: ignore[arg-type]
    if body:
        reader.feed_data(body)
    reader.feed_eof()
    return reader


def _response(response: web.StreamResponse) -> Response:
    """The client's view of the fake's `web.Response`."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes | bytearray):
        body = b""
    headers = CIMultiDict(response.headers)
    headers.setdefault("Content-Length", str(len(body)))
    return Response(response.status, CIMultiDictProxy(headers), bytes(body), response.content_type)
