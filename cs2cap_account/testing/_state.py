"""The fake account: its tier, its keys and what each route does to them.

Every operation here is synchronous, so a request's checks and its effect happen without
another request running in between, as they would in one database transaction.
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
import uuid
from collections import Counter
from datetime import datetime
from typing import Any, Final, Literal

import attrs

from cs2cap_account.testing._clock import WallClock, format_timestamp
from cs2cap_account.testing._errors import ApiError

__all__ = [
    "CHILD_PREFIX",
    "MAX_CHILD_KEYS",
    "ROOT_PREFIX",
    "TIERS",
    "UNSET",
    "AccountState",
    "Caller",
    "ChildChanges",
    "ChildSettings",
    "KeyRecord",
    "TierLimits",
    "Unset",
]

ROOT_PREFIX: Final = "sk_live_root"
CHILD_PREFIX: Final = "sk_live_child"
MAX_CHILD_KEYS: Final = 25
_STORE_SECURELY: Final = "Store this key securely. It will not be shown again."


@attrs.frozen
class TierLimits:
    """What a tier allows each key: requests per minute and per month."""

    name: str
    requests_per_minute: int
    requests_per_month: int


TIERS: Final[dict[str, TierLimits]] = {
    "free": TierLimits("free", 20, 1_000),
    "starter": TierLimits("starter", 40, 50_000),
    "pro": TierLimits("pro", 100, 500_000),
    "quant": TierLimits("quant", 300, 1_000_000),
}


class Unset(enum.Enum):
    """Marks a PATCH field the request did not send (as opposed to sending null)."""

    UNSET = "UNSET"


UNSET: Final = Unset.UNSET


@attrs.frozen
class ChildSettings:
    """A validated create request for a child key."""

    name: str
    quota_override: int | None = None
    rate_override: int | None = None


@attrs.frozen
class ChildChanges:
    """A validated PATCH request: `UNSET` leaves a field alone, `None` clears an override."""

    name: str | Unset = UNSET
    quota_override: int | Unset | None = UNSET
    rate_override: int | Unset | None = UNSET


@attrs.define
class KeyRecord:
    """One issued key, active or not. The plaintext is kept only so tests can use it."""

    id: str
    secret: str = attrs.field(repr=False)
    is_root: bool
    root_key_id: str
    created_at: datetime
    name: str | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    quota_override: int | None = None
    rate_override: int | None = None
    requests_this_month: int = 0

    @property
    def prefix(self) -> str:
        """The key's type prefix, `sk_live_root` or `sk_live_child`."""
        return ROOT_PREFIX if self.is_root else CHILD_PREFIX

    def is_active(self, now: datetime) -> bool:
        """Whether the key is neither revoked nor expired at `now`."""
        expired = self.expires_at is not None and self.expires_at <= now
        return self.revoked_at is None and not expired


@attrs.frozen
class Caller:
    """Who made an authenticated request, and which rate-limit bucket it draws from."""

    kind: Literal["session", "root", "child"]
    key: KeyRecord
    bucket: str
    requests_per_minute: int


def new_key_secret(prefix: str) -> str:
    """Return a fresh plaintext key: the prefix, `_`, then 32 URL-safe random characters."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def new_session_token() -> str:
    """Return a fresh JWT-shaped session token (unsigned; only its shape matters here)."""

    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part({"alg": "HS256", "typ": "JWT"})
    payload = part({"sub": str(uuid.uuid4()), "scope": "session"})
    return f"{header}.{payload}.{secrets.token_urlsafe(32)}"


@attrs.define
class AccountState:
    """One account: its tier, its active root key, its child keys and its session token."""

    _tier: TierLimits
    _now: WallClock
    _session_token: str = attrs.field(repr=False)
    _email_verified: bool
    _root_secret: str = attrs.field(repr=False)
    _root: KeyRecord = attrs.field(init=False)
    _by_secret: dict[str, KeyRecord] = attrs.field(factory=dict, init=False)
    _children: dict[str, KeyRecord] = attrs.field(factory=dict, init=False)
    _reissues: int = attrs.field(default=0, init=False)
    _child_reissues: Counter[str] = attrs.field(factory=Counter, init=False)

    def __attrs_post_init__(self) -> None:
        if not self._root_secret.startswith(f"{ROOT_PREFIX}_") or len(self._root_secret) < 20:
            raise ValueError(f"a root key must look like {ROOT_PREFIX}_<random>")
        if not self._session_token or self._session_token == self._root_secret:
            raise ValueError("the session token must be non-empty and differ from the root key")
        self._root = self._issue(self._root_secret, is_root=True)

    # --- who is calling -----------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """Resolve an `Authorization` header to a caller, or raise the API's 401.

        A key that authenticates has its `last_used_at` set to now.
        """
        caller = self._resolve(authorization)
        if caller.kind != "session":
            caller.key.last_used_at = self._now()
        return caller

    def identify(self, authorization: str | None) -> Caller | None:
        """Like `authenticate`, but return None instead of raising, and change nothing."""
        try:
            return self._resolve(authorization)
        except ApiError:
            return None

    def _resolve(self, authorization: str | None) -> Caller:
        if authorization is None:
            raise ApiError(401, "UNAUTHORIZED", "Missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "UNAUTHORIZED", "Invalid Authorization header")
        if secrets.compare_digest(token.encode(), self._session_token.encode()):
            return self._caller("session", self._root)
        record = self._by_secret.get(token)
        if record is None:
            raise ApiError(401, "AUTH_INVALID_API_KEY", "Invalid API key")
        if record.revoked_at is not None:
            raise ApiError(401, "AUTH_API_KEY_REVOKED", "API key has been revoked")
        if not record.is_active(self._now()):
            raise ApiError(401, "AUTH_API_KEY_EXPIRED", "API key has expired")
        return self._caller("root" if record.is_root else "child", record)

    def _caller(self, kind: Literal["session", "root", "child"], record: KeyRecord) -> Caller:
        bucket = "session" if kind == "session" else record.id
        return Caller(kind, record, bucket, self.effective_rate(record))

    # --- the routes' effects --------------------------------------------------------------

    def describe(self, caller: Caller) -> dict[str, Any]:
        """`GET /account/key`: the caller's own key (the active root key for a session)."""
        return {"key": self.key_info(caller.key)}

    def reissue_root(self) -> dict[str, Any]:
        """`POST /account/key/reissue`: a new root key; the old root and all children die."""
        self._require_verified_email()
        now = self._now()
        for record in (self._root, *self._children.values()):
            if record.revoked_at is None:
                record.revoked_at = now
        self._root = self._issue(new_key_secret(ROOT_PREFIX), is_root=True)
        self._reissues += 1
        return {
            "key": self._root.secret,
            "key_prefix": ROOT_PREFIX,
            "id": self._root.id,
            "created_at": format_timestamp(self._root.created_at, fractional=True),
            "message": "Root key reissued; the previous root key and every child key are "
            "revoked. " + _STORE_SECURELY,
        }

    def list_children(self, limit: int, offset: int) -> dict[str, Any]:
        """`GET /account/sub-keys`: one page of active child keys, oldest first."""
        active = self.active_children()
        page = active[offset : offset + limit]
        return {
            "keys": [self._detail(record) for record in page],
            "pagination": {
                "limit": limit,
                "offset": offset,
                "total": len(active),
                "has_next": offset + len(page) < len(active),
                "has_prev": offset > 0,
            },
        }

    def create_child(self, settings: ChildSettings) -> dict[str, Any]:
        """`POST /account/sub-keys`: a new child key under the active root key."""
        if self._tier.name != "quant":
            raise ApiError(403, "FORBIDDEN", "Child API keys require the Quant tier")
        self._require_verified_email()
        record = self.issue_child(settings)
        return self._created(record)

    def get_child(self, key_id: str) -> dict[str, Any]:
        """`GET /account/sub-keys/{key_id}`: one active child key and its usage."""
        return self._detail(self._active_child(key_id))

    def update_child(self, key_id: str, changes: ChildChanges) -> dict[str, Any]:
        """`PATCH /account/sub-keys/{key_id}`: change the fields the request sent."""
        record = self._active_child(key_id)
        if not isinstance(changes.name, Unset):
            record.name = changes.name
        if not isinstance(changes.quota_override, Unset):
            record.quota_override = changes.quota_override
        if not isinstance(changes.rate_override, Unset):
            record.rate_override = changes.rate_override
        return self._detail(record)

    def revoke_child(self, key_id: str) -> dict[str, Any]:
        """`DELETE /account/sub-keys/{key_id}`: revoke one child key."""
        record = self._active_child(key_id)
        record.revoked_at = self._now()
        return {
            "ok": True,
            "key_id": record.id,
            "revoked_at": format_timestamp(record.revoked_at, fractional=True),
        }

    def reissue_child(self, key_id: str) -> dict[str, Any]:
        """`POST /account/sub-keys/{key_id}/reissue`: a new child key in place of the old."""
        old = self._active_child(key_id)
        self._require_verified_email()
        old.revoked_at = self._now()
        self._child_reissues[old.name or ""] += 1
        settings = ChildSettings(old.name or "", old.quota_override, old.rate_override)
        return self._created(self._new_child(settings))

    # --- helpers shared with FakeCS2CapAPI ------------------------------------------------

    @property
    def tier(self) -> TierLimits:
        """The account's tier."""
        return self._tier

    @property
    def root(self) -> KeyRecord:
        """The active root key's record."""
        return self._root

    @property
    def session_token(self) -> str:
        """The session JWT's plaintext."""
        return self._session_token

    @property
    def reissues(self) -> int:
        """How many root reissues have taken effect."""
        return self._reissues

    @property
    def child_reissues(self) -> Counter[str]:
        """How many child reissues have taken effect, by the child's name."""
        return self._child_reissues

    @property
    def email_verified(self) -> bool:
        """Whether the account's email is verified (needed to issue keys)."""
        return self._email_verified

    @email_verified.setter
    def email_verified(self, verified: bool) -> None:
        self._email_verified = verified

    def now(self) -> datetime:
        """The fake's wall-clock time."""
        return self._now()

    def active_children(self) -> list[KeyRecord]:
        """Active child keys, oldest first."""
        now = self._now()
        return [record for record in self._children.values() if record.is_active(now)]

    def issue_child(self, settings: ChildSettings) -> KeyRecord:
        """Create a child key, refusing a 26th active one with the API's 409."""
        if len(self.active_children()) >= MAX_CHILD_KEYS:
            raise ApiError(
                409, "CONFLICT", f"An account may hold at most {MAX_CHILD_KEYS} active child keys"
            )
        return self._new_child(settings)

    def issued_secrets(self) -> tuple[str, ...]:
        """The session token, then every key ever issued (root and child, revoked too)."""
        return (self._session_token, *self._by_secret)

    def find(self, key_id: str) -> KeyRecord | None:
        """Any key ever issued, by id."""
        return next((r for r in self._by_secret.values() if r.id == key_id), None)

    def is_active(self, secret: str) -> bool:
        """Whether `secret` would authenticate right now."""
        return self.identify(f"Bearer {secret}") is not None

    def effective_rate(self, record: KeyRecord) -> int:
        """The per-minute limit enforced for `record`."""
        return record.rate_override or self._tier.requests_per_minute

    def effective_quota(self, record: KeyRecord) -> int:
        """The monthly quota enforced for `record`."""
        return record.quota_override or self._tier.requests_per_month

    def key_info(self, record: KeyRecord) -> dict[str, Any]:
        """Render `record` as the API's KeyInfo object."""

        def moment(value: datetime | None) -> str | None:
            return None if value is None else format_timestamp(value, fractional=False)

        return {
            "id": record.id,
            "key_prefix": record.prefix,
            "name": record.name,
            "root_key_id": record.root_key_id,
            "is_root_key": record.is_root,
            "is_active": record.is_active(self._now()),
            "created_at": format_timestamp(record.created_at, fractional=True),
            "last_used_at": moment(record.last_used_at),
            "expires_at": moment(record.expires_at),
            "quota_requests_per_month_override": record.quota_override,
            "rate_requests_per_minute_override": record.rate_override,
            "effective_quota_requests_per_month": self.effective_quota(record),
            "effective_rate_requests_per_minute": self.effective_rate(record),
        }

    # --- internals -----------------------------------------------------------------------

    def _issue(self, secret: str, *, is_root: bool, name: str | None = None) -> KeyRecord:
        key_id = str(uuid.uuid4())
        record = KeyRecord(
            id=key_id,
            secret=secret,
            is_root=is_root,
            root_key_id=key_id if is_root else self._root.id,
            created_at=self._now(),
            name=name,
        )
        self._by_secret[secret] = record
        return record

    def _new_child(self, settings: ChildSettings) -> KeyRecord:
        record = self._issue(new_key_secret(CHILD_PREFIX), is_root=False, name=settings.name)
        record.quota_override = settings.quota_override
        record.rate_override = settings.rate_override
        self._children[record.id] = record
        return record

    def _active_child(self, key_id: str) -> KeyRecord:
        record = self._children.get(key_id)
        if record is None or not record.is_active(self._now()):
            raise ApiError(404, "NOT_FOUND", "Child API key not found")
        return record

    def _require_verified_email(self) -> None:
        if not self._email_verified:
            raise ApiError(
                403,
                "FORBIDDEN",
                "Email verification is required before a key can be issued or reissued",
            )

    def _detail(self, record: KeyRecord) -> dict[str, Any]:
        return {"key": self.key_info(record), "requests_this_month": record.requests_this_month}

    def _created(self, record: KeyRecord) -> dict[str, Any]:
        return {"key": record.secret, "key_info": self.key_info(record), "message": _STORE_SECURELY}
