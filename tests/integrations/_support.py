"""Adapted clients for the integration tests, behind one small interface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx

from cs2cap_account import KeyRotator
from cs2cap_account.integrations.aiohttp import KeyMiddleware
from cs2cap_account.integrations.httpx import KeyAuth


@asynccontextmanager
async def aiohttp_caller(rotator: KeyRotator) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """An aiohttp session with `KeyMiddleware`; yields `get(url) -> status`."""
    async with aiohttp.ClientSession(middlewares=(KeyMiddleware(rotator),)) as session:

        async def get(url: str) -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        yield get


@asynccontextmanager
async def httpx_caller(rotator: KeyRotator) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """An httpx.AsyncClient with `KeyAuth`; yields `get(url) -> status`.

    Without keep-alive: under load, httpcore's pool can spin on a reused connection's
    lock (a stall inside httpcore, with or without auth); a connection per request
    keeps the test about the key.
    """
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(auth=KeyAuth(rotator), limits=limits) as client:

        async def get(url: str) -> int:
            return (await client.get(url)).status_code

        yield get


CALLERS = {"aiohttp": aiohttp_caller, "httpx": httpx_caller}
