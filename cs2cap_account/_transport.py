"""One HTTP attempt: the `Transport` seam the session layer calls, and its aiohttp default.

    Session ── send(method, url, headers, params, body, timeout) ──> Transport
            <── Response(status, headers, body, content_type), or APIConnectionError

A transport makes exactly one attempt (retries are the session's business) and reads the
whole body. It raises only the SDK's own `APIConnectionError` / `APITimeoutError`, chained
with `from exc`, with `request_sent` telling whether the request can have reached the
server. The chained aiohttp exception keeps its type and message but not its traceback:
aiohttp's frames hold the request headers, credential included, in their locals.
`AiohttpTransport` is the default and the only module that calls aiohttp's client;
aiohttp is imported when it first sends, so importing the SDK does not load aiohttp.
`cs2cap_account.testing` ships another: `FakeCS2CapAPI.transport()`, with no socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import attrs
from multidict import CIMultiDictProxy

from cs2cap_account._secret import forget_frames, redact_text
from cs2cap_account.errors import APIConnectionError, APITimeoutError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AiohttpTransport", "Response", "Transport"]

_TIMEOUT_CACHE_SIZE: Final = 8


@attrs.frozen
class Response:
    """Status, headers (case-insensitive) and the whole body of one HTTP response.

    `content_type` is the media type alone (`application/json`), without parameters.
    """

    status: int
    headers: CIMultiDictProxy[str]
    # The body may be a once-shown key: a `resp` local in a captured traceback shows its size.
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")
    content_type: str


@runtime_checkable
class Transport(Protocol):
    """Sends one request and returns the whole response; what `AccountClient` sends through.

    Pass one as `AccountClient(transport=...)`; the client closes it when it is closed.
    """

    @property
    def closed(self) -> bool:
        """True once `aclose()` ran."""

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
        """Make one attempt within `timeout` seconds and read the whole response.

        Raises `APITimeoutError` or `APIConnectionError` (with `request_sent` False only
        when the request cannot have reached the server), and `RuntimeError` once closed.
        """

    async def aclose(self) -> None:
        """Release what the transport holds. Safe to call more than once."""


@attrs.define
class AiohttpTransport:
    """Owns (or borrows) an aiohttp session and sends single requests through it.

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
            import aiohttp  # the SDK loads aiohttp only once it sends

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                raise_for_status=False,
                auto_decompress=True,
            )
        return self._session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            import aiohttp  # loaded by _get_session already: a dict lookup

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
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
    ) -> Response:
        """Send one request and read the whole response, or raise `APIConnectionError`."""
        session = self._get_session()
        import aiohttp  # loaded by _get_session already: a dict lookup

        try:
            async with session.request(
                method,
                url,
                headers=headers,
                params=params,
                data=body,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as resp:
                content = await resp.read()
                return Response(resp.status, resp.headers, content, resp.content_type)
        # Each aiohttp exception is chained (`from exc`: its type and message explain the
        # failure) without its traceback: aiohttp's frames, `_request` first, hold the
        # request headers in plain dicts, `Authorization: Bearer <key>` included, and an
        # error reporter capturing locals would walk them through `__cause__`. The frames
        # are detached, not cleared: clearing could finalize a coroutine still suspended
        # in another task (aiohttp shares DNS lookups between requests).
        except asyncio.CancelledError as exc:
            # Not translated, but `asyncio.wait_for` and `asyncio.timeout` chain it to the
            # TimeoutError they raise: it goes on without aiohttp's frames too.
            raise forget_frames(exc)  # noqa: B904 - re-raised as it is, without its frames
        except aiohttp.ConnectionTimeoutError as exc:
            raise APITimeoutError(
                f"{describe_request(method, url)}: could not connect within {timeout:g} s",
                request_sent=False,
            ) from forget_frames(exc)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise APITimeoutError(
                f"{describe_request(method, url)}: no response within {timeout:g} s"
            ) from forget_frames(exc)
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"{describe_request(method, url)}: could not connect: {_reason(exc)}",
                request_sent=False,
            ) from forget_frames(exc)
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"{describe_request(method, url)}: connection failed: {_reason(exc)}"
            ) from forget_frames(exc)
        except OSError as exc:
            raise APIConnectionError(
                f"{describe_request(method, url)}: connection failed: {_reason(exc)}"
            ) from forget_frames(exc)

    async def aclose(self) -> None:
        """Close the session if this transport created it. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()


def describe_request(method: str, url: str) -> str:
    """The request, for an error message: the URL without its query string."""
    return f"{method} {url.partition('?')[0]}"


def _reason(exc: BaseException) -> str:
    return redact_text(str(exc) or type(exc).__name__)
