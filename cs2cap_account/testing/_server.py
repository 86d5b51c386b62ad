"""`FakeCS2CapAPI`: the fake Account API, served in-process on a real TCP port."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Final

import attrs
from aiohttp import web

from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._secret import SecretKey
from cs2cap_account.testing._app import Backend, build_app
from cs2cap_account.testing._clock import MonotonicClock, WallClock, system_wall_clock
from cs2cap_account.testing._errors import ApiError
from cs2cap_account.testing._faults import FaultInjector
from cs2cap_account.testing._limits import SlidingWindowLimiter
from cs2cap_account.testing._routes import API_PREFIX
from cs2cap_account.testing._state import (
    ROOT_PREFIX,
    TIERS,
    AccountState,
    ChildSettings,
    KeyRecord,
    new_key_secret,
    new_session_token,
)
from cs2cap_account.testing._transport import InProcessTransport

__all__ = ["FakeCS2CapAPI", "IssuedKey", "live_fakes", "tracking_fakes"]

# Every fake not yet garbage-collected, so a test suite can audit them (see `live_fakes`).
_LIVE: Final[weakref.WeakValueDictionary[int, FakeCS2CapAPI]] = weakref.WeakValueDictionary()
# Lists that `tracking_fakes()` blocks are filling; each new fake is appended to all.
_TRACKERS: Final[list[list[FakeCS2CapAPI]]] = []


@attrs.frozen
class IssuedKey:
    """A key the fake issued to a test: its plaintext, its id and its KeyInfo as issued."""

    key: SecretKey
    key_id: str
    key_info: dict[str, Any]


def _plaintext(value: str | SecretKey | None) -> str | None:
    return value.reveal() if isinstance(value, SecretKey) else value


@attrs.define
class FakeCS2CapAPI:
    """A stateful fake of the CS2Cap Account API, served by aiohttp on `host:port`.

    One account (tier, email-verified flag) with one active root key, up to 25 child keys
    and a session JWT; all eight `/v1/account/...` routes behave as the real API does,
    including its errors, its per-key rate limits and its `X-RateLimit-*` headers::

        async with FakeCS2CapAPI(tier="quant") as api:
            client = AccountClient(api_key=api.root_key, base_url=api.base_url)
            api.faults.drop_after_commit("reissue_key")
            ...
            assert not api.is_active(old_key)

    Without a socket (no need to start it): `AccountClient(api_key=api.root_key,
    transport=api.transport())`, with the same routes, errors and faults.

    Keyword arguments, all optional:

    - `tier`: `"free"`, `"starter"`, `"pro"` or `"quant"` (only quant may create child keys).
    - `root_key`: the initial root key's plaintext (default: a fresh `sk_live_root_…`).
    - `session_token`: the session JWT's plaintext (default: a fresh JWT-shaped token).
    - `email_verified`: without it, issuing or reissuing a key answers 403.
    - `rate_limits`: enforce the per-minute limit with 429s (headers are sent either way).
    - `rate_window`: the sliding window's length in seconds (the API's is 60).
    - `host`, `port`: where to listen; port 0 picks a free port.
    - `clock`: monotonic seconds for rate windows (default `time.monotonic`).
    - `wall_clock`: the current UTC `datetime` for timestamps (default: the system's).
      Tests pass `cs2cap_account.FakeClock()`'s `monotonic` and `now` here and
      `advance()` it, so windows slide and keys age without sleeping.

    Counters: `requests` (per route name), `reissues` (root reissues that took effect),
    `faults.injected` (per fault kind). Route names: `get_key`, `reissue_key`,
    `list_sub_keys`, `create_sub_key`, `get_sub_key`, `update_sub_key`, `delete_sub_key`,
    `reissue_sub_key`.

    """

    _tier: str = attrs.field(default="quant", alias="tier")
    _root_key: str | SecretKey | None = attrs.field(default=None, alias="root_key", repr=False)
    _session_token: str | SecretKey | None = attrs.field(
        default=None, alias="session_token", repr=False
    )
    _email_verified: bool = attrs.field(default=True, alias="email_verified")
    _rate_limits: bool = attrs.field(default=True, alias="rate_limits")
    _rate_window: float = attrs.field(default=60.0, alias="rate_window")
    _host: str = attrs.field(default="127.0.0.1", alias="host")
    _port: int = attrs.field(default=0, alias="port")
    _clock: MonotonicClock = attrs.field(default=time.monotonic, alias="clock")
    _wall_clock: WallClock = attrs.field(default=system_wall_clock, alias="wall_clock")
    _backend: Backend = attrs.field(init=False, repr=False)
    _app: web.Application = attrs.field(init=False, repr=False)
    _runner: web.AppRunner | None = attrs.field(default=None, init=False)
    _bound_port: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self._tier not in TIERS:
            raise ValueError(f"unknown tier {self._tier!r}; expected one of {sorted(TIERS)}")
        state = AccountState(
            tier=TIERS[self._tier],
            now=self._wall_clock,
            session_token=_plaintext(self._session_token) or new_session_token(),
            email_verified=self._email_verified,
            root_secret=_plaintext(self._root_key) or new_key_secret(ROOT_PREFIX),
        )
        limiter = SlidingWindowLimiter(self._clock, self._rate_window, self._rate_limits)
        self._backend = Backend(state, limiter, FaultInjector())
        self._app = build_app(self._backend)
        _LIVE[id(self)] = self
        for tracker in _TRACKERS:
            tracker.append(self)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving. Prefer `async with FakeCS2CapAPI() as api:`."""
        if self._runner is not None:
            raise RuntimeError("the fake is already running")
        # No access log: it would add noise, and the fake's keys stay out of every log.
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop serving and close open connections. Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeCS2CapAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- where and who ---------------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        """The aiohttp application, e.g. for `aiohttp.test_utils.TestServer`."""
        return self._app

    def transport(self, *, clock: Clock | None = None) -> InProcessTransport:
        """A transport that hands requests to this fake without a socket.

        `AccountClient(api_key=api.root_key, transport=api.transport())` talks to the fake
        through the same routes, handlers and faults as over TCP; the fake need not be
        started. `delay` faults and each attempt's timeout run on `clock` (default: real
        time); pass the test's `FakeClock` to make them cost nothing. Each call returns a
        new transport (the client closes the one it was given); all share this fake.
        """
        return InProcessTransport(self._app, clock or SystemClock())

    @property
    def port(self) -> int:
        """The port the fake listens on (known once started)."""
        if self._bound_port is None:
            raise RuntimeError("the fake is not running; use `async with FakeCS2CapAPI()`")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. `http://127.0.0.1:54321/v1` (what `CS2C_API_BASE` holds)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def root_key(self) -> SecretKey:
        """The *current* active root key (it changes when a reissue takes effect)."""
        return SecretKey(self._state.root.secret)

    @property
    def root_key_id(self) -> str:
        """The current active root key's id."""
        return self._state.root.id

    @property
    def session_token(self) -> SecretKey:
        """The session JWT, which can call every route and reissue the root key."""
        return SecretKey(self._state.session_token)

    @property
    def tier(self) -> str:
        """The account's tier name."""
        return self._state.tier.name

    @property
    def email_verified(self) -> bool:
        """Whether the account's email is verified."""
        return self._state.email_verified

    # --- counters ----------------------------------------------------------------------

    @property
    def faults(self) -> FaultInjector:
        """Script faults per route, run chaos, and read `faults.injected` counts."""
        return self._backend.faults

    @property
    def requests(self) -> Counter[str]:
        """Requests received per route name (`"get_key"`, ...), faulted ones included."""
        return self._backend.requests

    @property
    def reissues(self) -> int:
        """Root-key reissues that took effect (lost responses included)."""
        return self._state.reissues

    @property
    def child_reissues(self) -> Counter[str]:
        """Child-key reissues that took effect, by the child's name (lost responses included)."""
        return self._state.child_reissues

    # --- arranging the account -------------------------------------------------------------

    def add_child_key(
        self,
        name: str,
        *,
        quota_requests_per_month_override: int | None = None,
        rate_requests_per_minute_override: int | None = None,
    ) -> IssuedKey:
        """Create a child key directly (no request, no tier or email checks).

        Raises `ValueError` when the account already holds 25 active child keys.
        """
        settings = ChildSettings(
            name, quota_requests_per_month_override, rate_requests_per_minute_override
        )
        try:
            record = self._state.issue_child(settings)
        except ApiError as exc:
            raise ValueError(str(exc.detail)) from None
        return IssuedKey(SecretKey(record.secret), record.id, self._state.key_info(record))

    def key_info(self, key_id: str | None = None) -> dict[str, Any]:
        """KeyInfo JSON for any key ever issued (default: the active root key)."""
        return self._state.key_info(self._record(key_id))

    def set_email_verified(self, verified: bool) -> None:
        """Mark the account's email verified or not (unverified: issuing keys answers 403)."""
        self._state.email_verified = verified

    def age_root_key(self, age: timedelta) -> None:
        """Make the active root key look `age` old (its `created_at` moves into the past)."""
        self._state.root.created_at = self._state.now() - age

    def age_child_key(self, key_id: str, age: timedelta) -> None:
        """Make a child key look `age` old (its `created_at` moves into the past)."""
        self._record(key_id).created_at = self._state.now() - age

    def set_root_created_at(self, created_at: datetime) -> None:
        """Set the active root key's `created_at` (timezone-aware)."""
        self._state.root.created_at = _aware(created_at)

    def set_root_expires_at(self, expires_at: datetime | None) -> None:
        """Set (or clear) the active root key's `expires_at`; once past, the key stops working."""
        self._state.root.expires_at = None if expires_at is None else _aware(expires_at)

    def record_usage(self, key_id: str, requests: int = 1) -> None:
        """Count `requests` data-route calls against a key's `requests_this_month`."""
        self._record(key_id).requests_this_month += requests

    def is_active(self, key: str | SecretKey) -> bool:
        """Whether `key` (an API key or the session token) would authenticate right now."""
        return self._state.is_active(_plaintext(key) or "")

    def issued_secrets(self) -> tuple[SecretKey, ...]:
        """Every credential this fake handed out: session token, then each root and child key.

        Revoked keys are included, in the order they were issued. For audits such as
        "no key this fake issued appears in any log line"; read-only.
        """
        return tuple(SecretKey(secret) for secret in self._state.issued_secrets())

    # --- internals -----------------------------------------------------------------------

    @property
    def _state(self) -> AccountState:
        return self._backend.state

    def _record(self, key_id: str | None) -> KeyRecord:
        if key_id is None:
            return self._state.root
        record = self._state.find(key_id)
        if record is None:
            raise KeyError(f"no key with id {key_id!r}")
        return record


def live_fakes() -> tuple[FakeCS2CapAPI, ...]:
    """Every `FakeCS2CapAPI` created in this process and not yet garbage-collected."""
    return tuple(_LIVE.values())


@contextlib.contextmanager
def tracking_fakes() -> Iterator[list[FakeCS2CapAPI]]:
    """Collect every `FakeCS2CapAPI` created inside the block into the yielded list.

    The list holds them strongly, so a fake that a test dropped is still there to audit
    (e.g. for its `issued_secrets()`) after the test ends::

        with tracking_fakes() as fakes:
            ...  # run the test
        secrets = {key for api in fakes for key in api.issued_secrets()}
    """
    created: list[FakeCS2CapAPI] = []
    _TRACKERS.append(created)
    try:
        yield created
    finally:
        _TRACKERS.remove(created)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime")
    return moment
