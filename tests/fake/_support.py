"""A bare aiohttp client for the fake's tests: no SDK involved."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs

from cs2cap_account import SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

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


@attrs.define
class Http:
    """A bare aiohttp client for one fake: paths are relative to its base URL."""

    session: aiohttp.ClientSession
    api: FakeCS2CapAPI

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, api: FakeCS2CapAPI) -> AsyncIterator[Http]:
        """A client for `api` with its own session, closed on exit."""
        async with aiohttp.ClientSession() as session:
            yield cls(session, api)

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: Token = None,
        json: object = None,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request with `Authorization: Bearer <token>` (if a token is given)."""
        headers = {}
        if token is not None:
            plain = token.reveal() if isinstance(token, SecretKey) else token
            headers["Authorization"] = f"Bearer {plain}"
        async with self.session.request(
            method,
            self.api.base_url + path,
            headers=headers,
            json=json,
            data=data,
            params=params,
        ) as response:
            return Reply(response.status, dict(response.headers), await response.text())

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
