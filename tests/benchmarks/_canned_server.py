"""Minimal HTTP/1.1 responders replaying the fake Account API's replies, for benchmarks.

Run as a separate process: `python tests/benchmarks/_canned_server.py`. It starts
`FakeCS2CapAPI` in-process just long enough to record its real replies (status, headers,
JSON body) to `GET /v1/account/key` and `GET /v1/account/sub-keys/{id}`, stops it, and then
answers those two paths with the recorded replies on two loopback ports:

- `port`: a bare `asyncio.Protocol` writing the recorded bytes. No routing, no
  authentication, no rate windows, no JSON encoding: the server costs next to nothing, so
  a client's own work is what a comparison sees.
- `aiohttp_port`: the same replies from a minimal `aiohttp.web` low-level server, a
  server with a realistic (small) cost per request.

It prints one JSON line (`port`, `aiohttp_port`, `key`, `sub_key_id`) on stdout once both
listen, and serves until stdin closes or it is terminated.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Final

import aiohttp
from aiohttp import web

from cs2cap_account.testing import FakeCS2CapAPI

__all__ = ["CannedHTTP", "Reply", "main", "record_replies"]

Reply = tuple[int, str, list[tuple[str, str]], bytes]

_KEPT_PREFIX: Final = "x-ratelimit-"


def _encode_reply(status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status} {reason}"]
    head += [f"{name}: {value}" for name, value in headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_NOT_FOUND: Final = _encode_reply(
    404,
    "Not Found",
    [("Content-Type", "application/json")],
    b'{"code":"NOT_FOUND","detail":"Not Found"}',
)


async def record_replies() -> tuple[dict[str, Reply], str, str]:
    """Record the fake API's replies; return them by request path, the root key, a child id."""
    async with FakeCS2CapAPI(tier="quant", rate_limits=False) as api:
        child = api.add_child_key("bench", rate_requests_per_minute_override=300)
        key = api.root_key.reveal()
        paths = ["/v1/account/key", f"/v1/account/sub-keys/{child.key_id}"]
        replies: dict[str, Reply] = {}
        origin = api.base_url.removesuffix("/v1")
        async with aiohttp.ClientSession() as session:
            for path in paths:
                async with session.get(
                    origin + path, headers={"Authorization": f"Bearer {key}"}
                ) as resp:
                    body = await resp.read()
                    kept = [
                        (name, value)
                        for name, value in resp.headers.items()
                        if name == "Content-Type" or name.lower().startswith(_KEPT_PREFIX)
                    ]
                    if resp.status != 200:
                        raise RuntimeError(f"recording {path} got HTTP {resp.status}")
                    replies[path] = (resp.status, resp.reason or "OK", kept, body)
    return replies, key, child.key_id


class CannedHTTP(asyncio.Protocol):
    """Answers each keep-alive HTTP/1.1 request with the recorded reply for its path."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        self._replies = replies
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write replies to."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Answer every complete request head in the buffer (bodies are skipped)."""
        buffer = self._buffer + data
        replies = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            skip = end + 4
            length = _content_length(head)
            if len(buffer) < skip + length:
                break
            buffer = buffer[skip + length :]
            target = head.split(b" ", 2)[1]
            replies.append(self._replies.get(target.partition(b"?")[0], _NOT_FOUND))
        self._buffer = buffer
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    value = lower[at + 17 :].split(b"\r\n", 1)[0]
    return int(value.strip() or b"0")


def _aiohttp_handler(replies: dict[str, Reply]) -> web.Server:
    responses = {
        path: (status, dict(headers), body) for path, (status, _, headers, body) in replies.items()
    }

    async def handle(request: web.BaseRequest) -> web.Response:
        found = responses.get(request.path)
        if found is None:
            return web.Response(status=404, body=b'{"code":"NOT_FOUND","detail":"Not Found"}')
        status, headers, body = found
        return web.Response(status=status, body=body, headers=headers)

    return web.Server(handle, access_log=None)


async def _serve() -> None:
    replies, key, child_id = await record_replies()
    encoded = {path.encode(): _encode_reply(*reply) for path, reply in replies.items()}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CannedHTTP(encoded), "127.0.0.1", 0, backlog=1024)
    runner = web.ServerRunner(_aiohttp_handler(replies), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    info = {
        "port": server.sockets[0].getsockname()[1],
        "aiohttp_port": runner.addresses[0][1],
        "key": key,
        "sub_key_id": child_id,
    }
    print(json.dumps(info), flush=True)
    # Serve until the parent closes our stdin (or terminates us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()
    await runner.cleanup()


def main() -> None:
    """Record the replies, serve them on a free loopback port, print where."""
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
