"""JSON bodies the API sends, and helpers to inspect what the client sent.

One place for payloads: tests override only the fields they are about.
"""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses
from aioresponses.core import RequestCall
from yarl import URL

BASE_URL: Final = "https://api.cs2c.test/v1"

ROOT_KEY: Final = "sk_live_root_Q3vX9kT2mZp8LrW4yB7nC1dF"
NEW_ROOT_KEY: Final = "sk_live_root_N8wE2rT5yU7iO9pA1sD3fG6h"
CHILD_KEY: Final = "sk_live_child_H4jK6lZ8xC0vB2nM5qW7eR9t"
SESSION_JWT: Final = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXZhbHVl"
ALL_SECRETS: Final = (ROOT_KEY, NEW_ROOT_KEY, CHILD_KEY, SESSION_JWT)

ROOT_ID: Final = "0b6f2a52-5a0e-4c1b-9d2a-6f1f3c9e0a11"
NEW_ROOT_ID: Final = "7c1d9e44-2b3a-4f5e-8a6b-1c2d3e4f5a66"
CHILD_ID: Final = "3e8a1b27-9c4d-4e6f-a1b2-c3d4e5f6a7b8"
CREATED_AT: Final = "2026-03-02T10:30:00Z"


def refused() -> aiohttp.ClientConnectorError:
    """The error aiohttp raises when the TCP connection is refused (nothing was sent)."""
    key = ConnectionKey("api.cs2c.test", 443, True, True, None, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


def key_info(**overrides: Any) -> dict[str, Any]:
    """A complete root-key `KeyInfo` object; keyword arguments replace or add fields."""
    body: dict[str, Any] = {
        "id": ROOT_ID,
        "key_prefix": "sk_live_root",
        "name": "production",
        "root_key_id": ROOT_ID,
        "is_root_key": True,
        "is_active": True,
        "created_at": CREATED_AT,
        "last_used_at": "2026-03-05T08:00:00.250Z",
        "expires_at": None,
        "quota_requests_per_month_override": None,
        "rate_requests_per_minute_override": None,
        "effective_quota_requests_per_month": 1_000_000,
        "effective_rate_requests_per_minute": 300,
    }
    body.update(overrides)
    return body


def child_info(**overrides: Any) -> dict[str, Any]:
    """A child-key `KeyInfo` object of the root key `ROOT_ID`."""
    fields: dict[str, Any] = {
        "id": CHILD_ID,
        "key_prefix": "sk_live_child",
        "name": "bot",
        "is_root_key": False,
        "rate_requests_per_minute_override": 60,
        "effective_rate_requests_per_minute": 60,
        **overrides,
    }
    return key_info(**fields)


def minimal_key_info(**overrides: Any) -> dict[str, Any]:
    """A `KeyInfo` object with only the fields the spec requires."""
    return {
        "id": ROOT_ID,
        "key_prefix": "sk_live_root",
        "is_active": True,
        "created_at": CREATED_AT,
        **overrides,
    }


def detail(info: dict[str, Any] | None = None, requests_this_month: Any = 42) -> dict[str, Any]:
    """A `{"key": KeyInfo, "requests_this_month": n}` object (a child key by default)."""
    return {
        "key": child_info() if info is None else info,
        "requests_this_month": requests_this_month,
    }


def page(
    details: list[dict[str, Any]], *, total: int, limit: int = 25, offset: int = 0
) -> dict[str, Any]:
    """A `GET /account/sub-keys` body."""
    return {
        "keys": details,
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": total,
            "has_next": offset + len(details) < total,
            "has_prev": offset > 0,
        },
    }


def reissued(key: str = NEW_ROOT_KEY, key_id: str = NEW_ROOT_ID) -> dict[str, Any]:
    """A `POST /account/key/reissue` body."""
    return {
        "key": key,
        "key_prefix": "sk_live_root",
        "id": key_id,
        "created_at": "2026-03-06T12:00:00+00:00",
        "message": "Store this key now; it will not be shown again.",
    }


def created(key: str = CHILD_KEY, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `POST /account/sub-keys` (or its reissue) body."""
    return {
        "key": key,
        "key_info": child_info() if info is None else info,
        "message": "Store this key now; it will not be shown again.",
    }


def error(code: str | None, detail: Any) -> dict[str, Any]:
    """An error body `{"code": ..., "detail": ...}`."""
    return {"code": code, "detail": detail}


def url(path: str, **query: str | int) -> URL:
    """The absolute URL of `path` under `BASE_URL`, as aioresponses keys its records."""
    full = URL(BASE_URL + path)
    if query:
        full = full.with_query(sorted((name, str(value)) for name, value in query.items()))
    return full


def calls(mock: aioresponses, method: str, path: str, **query: str | int) -> list[RequestCall]:
    """Every request the client sent to `method path?query`, oldest first."""
    assert mock.requests is not None
    return list(mock.requests.get((method, url(path, **query)), []))


def only_call(mock: aioresponses, method: str, path: str, **query: str | int) -> RequestCall:
    """The single request sent to `method path?query`; fails if there were 0 or several."""
    sent = calls(mock, method, path, **query)
    assert len(sent) == 1, f"expected one {method} {path}, got {len(sent)}"
    return sent[0]


def total_calls(mock: aioresponses) -> int:
    """How many requests the client sent, to any URL."""
    assert mock.requests is not None
    return sum(len(sent) for sent in mock.requests.values())


def sent_json(call: RequestCall) -> Any:
    """The decoded JSON body of a recorded request."""
    data = call.kwargs["data"]
    assert isinstance(data, bytes), f"expected a bytes body, got {data!r}"
    return json.loads(data)


def sent_headers(call: RequestCall) -> dict[str, str]:
    """The headers of a recorded request, as a plain dict."""
    return dict(call.kwargs["headers"])
