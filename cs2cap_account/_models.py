"""The API's responses as frozen attrs values. Built only by `_converter`."""

from __future__ import annotations

import datetime as dt

import attrs

from cs2cap_account._secret import SecretKey

__all__ = [
    "CreatedSubKey",
    "KeyInfo",
    "Pagination",
    "RateLimitInfo",
    "ReissuedKey",
    "RevokedSubKey",
    "SubKeyDetail",
    "SubKeyPage",
]


@attrs.frozen
class KeyInfo:
    """Metadata of one API key (never its plaintext).

    `root_key_id` equals `id` for a root key. `effective_rate_requests_per_minute` and
    `effective_quota_requests_per_month` are the limits actually enforced for this key.
    Every timestamp is timezone-aware.
    """

    id: str
    key_prefix: str
    is_active: bool
    created_at: dt.datetime
    name: str | None = None
    root_key_id: str | None = None
    is_root_key: bool = True
    last_used_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    quota_requests_per_month_override: int | None = None
    rate_requests_per_minute_override: int | None = None
    effective_quota_requests_per_month: int = 0
    effective_rate_requests_per_minute: int = 0


@attrs.frozen
class ReissuedKey:
    """The answer to a root-key reissue: the new plaintext `key`, shown once by the API."""

    key: SecretKey
    key_prefix: str
    id: str
    created_at: dt.datetime
    message: str = ""


@attrs.frozen
class SubKeyDetail:
    """One child key's metadata and its request count this month."""

    key: KeyInfo
    requests_this_month: int


@attrs.frozen
class Pagination:
    """Offset pagination of a list. Follow `total`; a page may be shorter than `limit`."""

    limit: int
    offset: int
    total: int
    has_next: bool | None = None
    has_prev: bool | None = None
    next_cursor: str | None = None


@attrs.frozen
class SubKeyPage:
    """One page of child keys."""

    keys: tuple[SubKeyDetail, ...]
    pagination: Pagination


@attrs.frozen
class CreatedSubKey:
    """A newly created (or reissued) child key: the plaintext `key`, shown once."""

    key: SecretKey
    key_info: KeyInfo
    message: str = ""


@attrs.frozen
class RevokedSubKey:
    """The answer to a child-key delete."""

    ok: bool
    key_id: str | None = None
    revoked_at: dt.datetime | None = None


@attrs.frozen
class RateLimitInfo:
    """What the server said about the caller's rate limit, from `X-RateLimit-*` headers.

    `reset_at` is when the window resets (timezone-aware); `retry_after` is the server's
    `Retry-After` in seconds, when it sent one.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: dt.datetime | None = None
    tier: str | None = None
    retry_after: float | None = None
