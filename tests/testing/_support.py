"""A bare HTTP client for the fake's tests: no SDK client involved.

It sends through the fake's in-process transport by default (no socket), or, opened with
`tcp=True`, through a real aiohttp session to the started fake, for the tests about what
happens on the wire.
"""

from __future__ import annotations

import contextlib
import json
import json as _json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs

from cs2cap_account import Clock, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI, InProcessTransport

IN_PROCESS_BASE = "https://fake.test/v1"

Token = SecretKey | str | None
MakeFake = Callable[..., Awaitable[FakeCS2CapAPI]]


@attrs.frozen
class Reply:
    """One HTTP response as the tests look at it."""

    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.text)

    @property
    def code(self) -> str:
        """The error body's `code`."""
        code = self.json["code"]
        assert isinstance(code, str)
        return code


def is_running(api: FakeCS2CapAPI) -> bool:
    """Whether `api` listens on a port."""
    try:
        _ = api.port
    except RuntimeError:
        return False
    return True


@attrs.define
class Http:
    """A bare HTTP client for one fake: paths are relative to its base URL.

    `session` is the aiohttp session over TCP, None in-process.
    """

    api: FakeCS2CapAPI
    session: aiohttp.ClientSession | None = None
    transport: InProcessTransport | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, api: FakeCS2CapAPI, *, tcp: bool = False, clock: Clock | None = None
    ) -> AsyncIterator[Http]:
        """A client for `api`: in-process (delays on `clock`), or with `tcp` its own
        aiohttp session to the fake (started here if it is not running), closed on exit.
        """
        if not tcp:
            yield cls(api, transport=api.transport(clock=clock))
            return
        if not is_running(api):
            await api.start()
        async with aiohttp.ClientSession() as session:
            yield cls(api, session=session)

    @property
    def base_url(self) -> str:
        """The base URL requests go to."""
        return self.api.base_url if self.session is not None else IN_PROCESS_BASE

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: Token = None,
        json: object = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request with `Authorization: Bearer <token>` (if a token is given)
        and any other `headers`.
        """
        headers = dict(headers or {})
        if token is not None:
            plain = token.reveal() if isinstance(token, SecretKey) else token
            headers["Authorization"] = f"Bearer {plain}"
        if self.session is None:
            assert self.transport is not None
            if json is not None:
                data = _json.dumps(json).encode()
                headers["Content-Type"] = "application/json"
            response = await self.transport.send(
                method, self.base_url + path, headers=headers, params=params, body=data, timeout=30
            )
            return Reply(response.status, dict(response.headers), response.body.decode())
        async with self.session.request(
            method,
            self.base_url + path,
            headers=headers,
            json=json,
            data=data,
            params=params,
        ) as reply:
            return Reply(reply.status, dict(reply.headers), await reply.text())

    async def get(self, path: str, *, token: Token = None, **kwargs: Any) -> Reply:
        """GET `path`."""
        return await self.request("GET", path, token=token, **kwargs)

    async def post(self, path: str, *, token: Token = None, **kwargs: Any) -> Reply:
        """POST `path`."""
        return await self.request("POST", path, token=token, **kwargs)

    async def patch(self, path: str, *, token: Token = None, **kwargs: Any) -> Reply:
        """PATCH `path`."""
        return await self.request("PATCH", path, token=token, **kwargs)

    async def delete(self, path: str, *, token: Token = None, **kwargs: Any) -> Reply:
        """DELETE `path`."""
        return await self.request("DELETE", path, token=token, **kwargs)
