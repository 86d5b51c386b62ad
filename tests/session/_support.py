"""Helpers for the session-layer tests: canned bodies, a recording transport, and a
scripted loopback server.

`Recorder` wraps the fake's in-process transport and notes, for every request, the
virtual time it was sent, its method, path and `Authorization` header: the fake plus a
`Recorder` stands in for the scripted server wherever the socket adds nothing.

`ScriptedServer` is a real `aiohttp.web` server on 127.0.0.1. Each request takes the next
scripted reply (or a default 200), and the server records, for every request, the
virtual time it arrived (read from the test's `FakeClock`), its method, path and
`Authorization` header.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from cs2cap_account import FakeClock, SecretKey
from cs2cap_account._transport import Response, Transport
from cs2cap_account.testing import FakeCS2CapAPI

ROOT_ID = "0b9d3c4e-8f1a-4c2b-9e7d-1a2b3c4d5e6f"
API_KEY = "sk_live_root_Q7pX2mZk9LwR4tYb8NcV3sHd"


def key_info(*, key_id: str = ROOT_ID, rate: int = 300, is_active: bool = True) -> dict[str, Any]:
    """A minimal, valid KeyInfo JSON object."""
    return {
        "id": key_id,
        "key_prefix": "sk_live_root",
        "root_key_id": key_id,
        "is_root_key": True,
        "is_active": is_active,
        "created_at": "2026-01-01T00:00:00Z",
        "effective_rate_requests_per_minute": rate,
    }


def key_body(*, key_id: str = ROOT_ID, rate: int = 300) -> dict[str, Any]:
    """The body of a successful `GET /account/key`."""
    return {"key": key_info(key_id=key_id, rate=rate)}


def sub_key_detail(key_id: str) -> dict[str, Any]:
    """The body of a successful `GET/PATCH /account/sub-keys/{id}`."""
    info = key_info(key_id=key_id) | {
        "key_prefix": "sk_live_child",
        "is_root_key": False,
        "root_key_id": ROOT_ID,
    }
    return {"key": info, "requests_this_month": 0}


def revoked_body(key_id: str) -> dict[str, Any]:
    """The body of a successful `DELETE /account/sub-keys/{id}`."""
    return {"ok": True, "key_id": key_id, "revoked_at": "2026-01-01T00:00:00Z"}


def error_body(code: str, detail: str = "nope") -> dict[str, Any]:
    """An API error body."""
    return {"code": code, "detail": detail}


@attrs.frozen
class Reply:
    """One scripted server reply. `drop` closes the connection instead of answering."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    drop: bool = False
    raw: bytes | None = None


@attrs.frozen
class Seen:
    """One request as the server received it."""

    at: float
    method: str
    path: str
    # The credential as sent: kept for the test to compare, never in a repr.
    authorization: str | None = attrs.field(repr=False)
    content_type: str | None = None
    body: bytes | None = None


@attrs.define
class Recorder:
    """A transport that notes each request (as `Seen`) and hands it to `inner`."""

    inner: Transport
    clock: FakeClock
    seen: list[Seen] = attrs.field(factory=list)

    @property
    def closed(self) -> bool:
        """Whether `inner` is closed."""
        return self.inner.closed

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
        """Note the request, then send it through `inner`."""
        path = "/" + url.split("://", 1)[-1].partition("/")[2].partition("?")[0]
        self.seen.append(
            Seen(
                self.clock.monotonic(),
                method,
                path,
                headers.get("Authorization"),
                headers.get("Content-Type"),
                body,
            )
        )
        return await self.inner.send(
            method, url, headers=headers, params=params, body=body, timeout=timeout
        )

    async def aclose(self) -> None:
        """Close `inner`."""
        await self.inner.aclose()

    def fork(self, inner: Transport) -> Recorder:
        """A recorder for another client: its own `inner`, noting into the same `seen`."""
        return Recorder(inner, self.clock, self.seen)


async def revoke_root_key(fake: FakeCS2CapAPI) -> SecretKey:
    """Reissue the fake's root key (with its session token, over a transport of its own)
    and return the old key, now revoked.
    """
    old = fake.root_key
    transport = fake.transport()
    auth = {"Authorization": f"Bearer {fake.session_token.reveal()}"}
    reply = await transport.send(
        "POST", "https://fake.test/v1/account/key/reissue", headers=auth, timeout=5
    )
    await transport.aclose()
    assert reply.status == 200
    return old


def canned(body: Any) -> bytes:
    """`body` as JSON bytes, for the fake's `raw_body` fault."""
    return json.dumps(body).encode()


@attrs.define
class ScriptedServer:
    """A loopback HTTP server answering from a script, recording what it received."""

    clock: FakeClock
    default: Reply = attrs.field(factory=lambda: Reply(body=key_body()))
    script: deque[Reply] = attrs.field(factory=deque)
    seen: list[Seen] = attrs.field(factory=list)
    _server: TestServer | None = None

    def then(self, *replies: Reply) -> ScriptedServer:
        """Queue replies for the next requests, in order."""
        self.script.extend(replies)
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                self.clock.monotonic(),
                request.method,
                request.path,
                request.headers.get("Authorization"),
            )
        )
        await request.read()
        reply = self.script.popleft() if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if reply.raw is not None:
            return web.Response(status=reply.status, body=reply.raw, headers=dict(reply.headers))
        body = b"" if reply.body is None else json.dumps(reply.body).encode()
        return web.Response(
            status=reply.status,
            body=body,
            content_type="application/json",
            headers=dict(reply.headers),
        )

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.close()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        assert self._server.port is not None
        return self._server.port

    @property
    def base_url(self) -> str:
        """The API base URL on this server."""
        return f"http://127.0.0.1:{self.port}/v1"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.define
class SwitchableResolver(AbstractResolver):
    """Resolves every host to 127.0.0.1:`port`, or, while `refuse` > 0, to a closed port.

    Used with `use_dns_cache=False` and `force_close=True`, each request opens a new
    connection and asks this resolver, so a test can refuse exactly the attempts it wants.
    """

    port: int
    refuse: int = 0
    refuse_always: bool = False
    refused: int = 0
    _dead_port: int = attrs.field(factory=closed_port)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The live port, or the dead one when refusing."""
        target = self.port
        if self.refuse_always or self.refuse > 0:
            self.refuse = max(0, self.refuse - 1)
            self.refused += 1
            target = self._dead_port
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=target,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        """Nothing to release."""


def backoff_bounds(attempt: int) -> tuple[float, float]:
    """The range the backoff after failed attempt `attempt` (1-based) must fall in.

    0.5 s doubling per attempt, plus up to 0.5 s of jitter, never above 8 s. At the cap
    the jitter may still spread waits over the last half second (7.5-8 s).
    """
    base = 0.5 * 2 ** (attempt - 1)
    return min(base, 7.5), min(base + 0.5, 8.0)


def assert_backoff(sleeps: list[float]) -> None:
    """Each recorded wait lies within the backoff bounds of its attempt."""
    for attempt, slept in enumerate(sleeps, start=1):
        low, high = backoff_bounds(attempt)
        assert low <= slept <= high, (attempt, slept, (low, high))
