"""The fake's aiohttp.web application.

One request, top to bottom (`_serve`):

1. count it under its route's name, and ask the fault injector for a fault;
2. a fault that replaces the handler (error, monthly quota, raw body, drop) answers now;
3. otherwise `_answer`: authenticate (401) → sliding rate window (429) → child key on a
   management route (403) → the route's handler, which validates (422) and applies its
   effect to the account state (200/201, or 403/404/409);
4. a fault that follows the handler (drop after commit, truncated body) mangles the reply.

The same application serves TCP (`FakeCS2CapAPI.start()`) and in-process requests
(`FakeCS2CapAPI.transport()`); the connection a request arrived on decides how a delay
waits and how a drop closes it.

Every reply carries `X-RateLimit-Limit/Remaining/Reset/Tier`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Final

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from cs2cap_account.testing._errors import ApiError
from cs2cap_account.testing._faults import Fault, FaultInjector, FaultKind
from cs2cap_account.testing._limits import SlidingWindowLimiter, WindowState
from cs2cap_account.testing._routes import API_PREFIX, ROUTES, Route
from cs2cap_account.testing._state import AccountState, Caller
from cs2cap_account.testing._transport import InProcessConnection
from cs2cap_account.testing._validation import (
    parse_child_changes,
    parse_child_settings,
    parse_key_id,
    parse_page,
)

__all__ = ["Backend", "build_app"]


@attrs.define
class Backend:
    """Everything a request touches: account state, rate windows, faults, counters."""

    state: AccountState
    limiter: SlidingWindowLimiter
    faults: FaultInjector
    requests: Counter[str] = attrs.field(factory=Counter)


@attrs.frozen
class _Call:
    """What a route handler gets: the authenticated caller and the request's inputs."""

    caller: Caller
    query: Mapping[str, str]
    key_id: str
    body: bytes


@attrs.frozen
class _Reply:
    status: int
    payload: dict[str, Any]
    headers: Mapping[str, str]


# --- the eight routes ------------------------------------------------------------------------


def _get_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 200, state.describe(call.caller)


def _reissue_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 200, state.reissue_root()


def _list_sub_keys(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    limit, offset = parse_page(call.query)
    return 200, state.list_children(limit, offset)


def _create_sub_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 201, state.create_child(parse_child_settings(call.body, state.tier))


def _get_sub_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 200, state.get_child(parse_key_id(call.key_id))


def _update_sub_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    key_id = parse_key_id(call.key_id)
    return 200, state.update_child(key_id, parse_child_changes(call.body, state.tier))


def _delete_sub_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 200, state.revoke_child(parse_key_id(call.key_id))


def _reissue_sub_key(state: AccountState, call: _Call) -> tuple[int, dict[str, Any]]:
    return 200, state.reissue_child(parse_key_id(call.key_id))


_HANDLERS: Final[dict[str, Callable[[AccountState, _Call], tuple[int, dict[str, Any]]]]] = {
    "get_key": _get_key,
    "reissue_key": _reissue_key,
    "list_sub_keys": _list_sub_keys,
    "create_sub_key": _create_sub_key,
    "get_sub_key": _get_sub_key,
    "update_sub_key": _update_sub_key,
    "delete_sub_key": _delete_sub_key,
    "reissue_sub_key": _reissue_sub_key,
}


# --- the pipeline ----------------------------------------------------------------------------


def build_app(backend: Backend) -> web.Application:
    """Return the aiohttp application serving the eight routes under `/v1`."""
    app = web.Application(middlewares=[_json_for_unknown_routes(backend)])
    for route in ROUTES:
        app.router.add_route(route.method, API_PREFIX + route.path, _endpoint(backend, route))
    return app


def _endpoint(backend: Backend, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        response = await _serve(backend, route, request)
        # The fake's own time, as a server's `Date`, so clients can measure skew against it.
        response.headers["Date"] = email.utils.format_datetime(
            backend.state.now().astimezone(timezone.utc), usegmt=True
        )
        return response

    return handle


async def _serve(backend: Backend, route: Route, request: web.Request) -> web.Response:
    """Handle one request on `route`: pick a fault, answer, and let the fault act."""
    backend.requests[route.name] += 1
    fault = backend.faults.take(route.name)
    if fault is None:
        return _render(await _answer(backend, route, request))
    if fault.delay_before > 0:
        await _wait(request, fault.delay_before)
    if not fault.runs_handler:
        return _fault_instead_of_handler(backend, fault, request)
    reply = await _answer(backend, route, request)  # the route's effect is committed here
    if fault.delay_after > 0:
        await _wait(request, fault.delay_after)
    if fault.kind is FaultKind.DROP_AFTER_COMMIT:
        return _drop_connection(request)
    if fault.kind is FaultKind.TRUNCATED_BODY:
        return _render(reply, truncate=True)
    return _render(reply)


async def _answer(backend: Backend, route: Route, request: web.Request) -> _Reply:
    """Authenticate, rate-limit, authorize, then run the route's handler."""
    state = backend.state
    body = await request.read()
    try:
        caller = state.authenticate(request.headers.get("Authorization"))
    except ApiError as error:
        return _Reply(error.status, error.body(), {**_rate_headers(backend, None), **error.headers})
    window = backend.limiter.hit(caller.bucket, caller.requests_per_minute)
    headers = _window_headers(window, state.tier.name)
    try:
        if window.refused:
            retry_after = {"Retry-After": str(window.retry_after)}
            raise ApiError(429, "RATE_LIMIT_EXCEEDED", "Too Many Requests", headers=retry_after)
        if route.management and caller.kind == "child":
            raise ApiError(403, "FORBIDDEN", "Child API keys cannot call key-management routes")
        call = _Call(caller, request.query, request.match_info.get("key_id", ""), body)
        status, payload = _HANDLERS[route.name](state, call)
    except ApiError as error:
        return _Reply(error.status, error.body(), {**headers, **error.headers})
    return _Reply(status, payload, headers)


def _fault_instead_of_handler(backend: Backend, fault: Fault, request: web.Request) -> web.Response:
    """Answer with `fault` alone; the handler never runs, so nothing changes."""
    if fault.kind is FaultKind.DROP:
        return _drop_connection(request)
    caller = backend.state.identify(request.headers.get("Authorization"))
    headers = _rate_headers(backend, caller)
    if fault.kind is FaultKind.RAW_BODY:
        return web.Response(
            status=fault.status, body=fault.body, content_type=fault.content_type, headers=headers
        )
    if fault.kind is FaultKind.MONTHLY_QUOTA:
        quota = backend.state.effective_quota(caller.key if caller else backend.state.root)
        reset = _seconds_until_next_month(backend.state.now())
        headers |= {
            "X-RateLimit-Limit": str(quota),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(reset),
        }
        payload = {
            "code": "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED",
            "detail": f"Monthly quota exceeded ({quota}/{quota} requests).",
        }
        return _response(429, _encode(payload), headers)
    payload = (
        {"detail": fault.detail}
        if fault.code is None
        else {"code": fault.code, "detail": fault.detail}
    )
    return _response(fault.status, _encode(payload), {**headers, **fault.headers})


async def _wait(request: web.Request, seconds: float) -> None:
    """Wait before answering: for real over TCP, on the transport's clock in-process."""
    connection = request.transport
    if isinstance(connection, InProcessConnection):
        await connection.delay(seconds)
    else:
        await asyncio.sleep(seconds)


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection; aiohttp then finds it closed and sends nothing."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


def _json_for_unknown_routes(backend: Backend) -> Middleware:
    """Answer unknown paths (404) and methods (405) with the API's JSON error body."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:  # the router's 404 and 405
            code = exc.reason.upper().replace(" ", "_")
            headers = _rate_headers(backend, None)
            if "Allow" in exc.headers:
                headers["Allow"] = exc.headers["Allow"]
            return _response(exc.status, _encode({"code": code, "detail": exc.reason}), headers)

    return middleware


# --- helpers ---------------------------------------------------------------------------------


def _rate_headers(backend: Backend, caller: Caller | None) -> dict[str, str]:
    """`X-RateLimit-*` for a reply that did not count against a window.

    An identified caller sees its bucket as it stands; anyone else sees the tier's limit.
    """
    tier = backend.state.tier
    if caller is None:
        window = WindowState(tier.requests_per_minute, tier.requests_per_minute, 0)
    else:
        window = backend.limiter.peek(caller.bucket, caller.requests_per_minute)
    return _window_headers(window, tier.name)


def _window_headers(window: WindowState, tier: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Reset": str(window.reset_seconds),
        "X-RateLimit-Tier": tier,
    }


def _seconds_until_next_month(now: datetime) -> int:
    now = now.astimezone(timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    return max(1, math.ceil((start - now).total_seconds()))


def _encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _render(reply: _Reply, *, truncate: bool = False) -> web.Response:
    """Encode `reply`; `truncate` keeps only the first half of its JSON body."""
    body = _encode(reply.payload)
    return _response(reply.status, body[: len(body) // 2] if truncate else body, reply.headers)


def _response(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    return web.Response(
        status=status, body=body, content_type="application/json", headers=dict(headers)
    )
