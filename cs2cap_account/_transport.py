"""One HTTP attempt over aiohttp: the only module that calls aiohttp for client requests.

Every aiohttp and timeout exception is translated here into the SDK's own errors, chained
with `from exc`, and marked with whether the request can have reached the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import attrs
from multidict import CIMultiDictProxy

from cs2cap_account._secret import redact_text
from cs2cap_account.errors import APIConnectionError, APITimeoutError

__all__ = ["Response", "Transport"]

_TIMEOUT_CACHE_SIZE: Final = 8


@attrs.frozen
class Response:
    """Status, headers and the whole body of one HTTP response."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    content_type: str


@attrs.define
class Transport:
    """Owns (or borrows) the aiohttp session and sends single requests through it.

    An injected `session` is used as it is and never closed here. Without one, a session
    is created on the first request (inside the running loop) and closed by `aclose()`.
    """

    _session: aiohttp.ClientSession | None = None
    _owns_session: bool = attrs.field(init=False, default=False)
    _closed: bool = attrs.field(init=False, default=False)
    _timeouts: dict[float, aiohttp.ClientTimeout] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._owns_session = self._session is None

    @property
    def closed(self) -> bool:
        """True once `aclose()` ran."""
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this AccountClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                raise_for_status=False,
                auto_decompress=True,
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            # A deadline makes many one-off values: keep the cache small.
            if len(self._timeouts) >= _TIMEOUT_CACHE_SIZE:
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Send one request and read the whole response, or raise `APIConnectionError`."""
        session = self._get_session()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                params=params,
                data=data,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body, resp.content_type)
        except aiohttp.ConnectionTimeoutError as exc:
            raise APITimeoutError(
                f"{_what(method, url)}: could not connect within {timeout:g} s", request_sent=False
            ) from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise APITimeoutError(
                f"{_what(method, url)}: no response within {timeout:g} s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"{_what(method, url)}: could not connect: {_reason(exc)}", request_sent=False
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"{_what(method, url)}: connection failed: {_reason(exc)}"
            ) from exc
        except OSError as exc:
            raise APIConnectionError(
                f"{_what(method, url)}: connection failed: {_reason(exc)}"
            ) from exc

    async def aclose(self) -> None:
        """Close the session if this transport created it. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()


def _what(method: str, url: str) -> str:
    """The request, for an error message: built only when there is an error to report."""
    return f"{method} {url.partition('?')[0]}"


def _reason(exc: BaseException) -> str:
    return redact_text(str(exc) or type(exc).__name__)
