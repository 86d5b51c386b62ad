"""`AccountClient`: one typed async method per CS2Cap account route."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from cs2cap_account._arguments import check_count, check_flag, check_int
from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, USER_AGENT
from cs2cap_account._converter import KeyEnvelope, ReissueAnswer
from cs2cap_account._models import (
    CreatedSubKey,
    KeyInfo,
    RateLimitInfo,
    ReissuedKey,
    RevokedSubKey,
    SubKeyDetail,
    SubKeyPage,
)
from cs2cap_account._ratelimit import SlidingWindowLimiter
from cs2cap_account._reissue import (
    Answered,
    ChildProbe,
    Gone,
    NoAnswer,
    ProbeResult,
    Refused,
    Verdict,
    child_verdict,
    verdict,
)
from cs2cap_account._secret import SecretKey, redact_text
from cs2cap_account._session import (
    Credentials,
    Hooks,
    Options,
    Session,
    Shared,
    describe_error,
)
from cs2cap_account._transport import AiohttpTransport, Transport
from cs2cap_account.errors import (
    APITimeoutError,
    AuthenticationError,
    CS2CapError,
    KeyLostError,
    MalformedResponseError,
    NotFoundError,
    OutcomeUnknownError,
    ReissueOutcomeUnknownError,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_BASE_URL", "MAX_ITERATED", "AccountClient", "SubKeys"]

# `sub_keys.iterate()` gives up past this many keys: an account holds at most 25.
MAX_ITERATED: Final = 10_000


logger: Final = logging.getLogger("cs2cap_account")


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http(s) URL with a host, got {redact_text(base_url)!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("base_url must not carry credentials, a query or a fragment")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ValueError(
            f"refusing to send an API key over plain http to {parts.hostname}; "
            "use https, or pass allow_insecure_http=True if you really mean it"
        )
    return base_url.rstrip("/")


def _secret(value: str | SecretKey | None, name: str = "api_key") -> SecretKey | None:
    if value is None or isinstance(value, SecretKey):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or SecretKey, got {type(value).__name__}")
    if not value or value != value.strip():
        # Never the value: it is meant to be a key.
        raise ValueError(f"{name} must be a non-empty string without surrounding whitespace")
    return SecretKey(value)


class AccountClient:
    """Async client for the CS2Cap Account API.

    ```python
    async with AccountClient() as client:        # key from CS2C_API_KEY
        info = await client.get_key()
    ```

    `api_key` falls back to the `CS2C_API_KEY` environment variable (unless a
    `session_token` is given) and `base_url` to `CS2C_API_BASE`, then to
    `https://api.cs2c.app/v1`. A `session_token` (a session JWT) can stand in for the key
    on account routes. Plain `http://` is refused for any host
    but loopback unless `allow_insecure_http=True`.

    Requests that fail transiently are retried `max_retries` times (GET, PATCH, DELETE;
    a POST only when the server provably did not act), each attempt limited to `timeout`
    seconds and all of them to `deadline` seconds if given. `requests_per_minute` paces
    calls client-side: None learns the rate from `get_key()`, 0 turns pacing off.

    Requests go out through a `transport` (one HTTP attempt each; see
    `cs2cap_account._transport.Transport`): by default aiohttp, on a session the client
    creates and closes. An injected aiohttp `session` is used as it is and never closed
    by the client. An injected `transport` (such as `FakeCS2CapAPI.transport()` from
    `cs2cap_account.testing`, which needs no socket) is handed over: the client closes it
    when it is closed, as httpx does. Pass `session` or `transport`, not both.
    """

    sub_keys: SubKeys

    def __init__(
        self,
        api_key: str | SecretKey | None = None,
        *,
        session_token: str | SecretKey | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        requests_per_minute: int | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        allow_insecure_http: bool = False,
        deadline: float | None = None,
        max_retry_wait: float = 60.0,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
    ) -> None:
        # Every argument is checked before anything is built: a bad one raises at once,
        # naming itself (never its value), and an injected transport is left untouched.
        options = Options(
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            max_retry_wait=max_retry_wait,
        )
        if session is not None and transport is not None:
            raise TypeError(
                "pass session= (an aiohttp session for the default transport) or "
                "transport=, not both"
            )
        if transport is not None and not isinstance(transport, Transport):
            raise TypeError(
                f"transport must provide send(), aclose() and closed, got {type(transport)!r}"
            )
        if session is not None:
            import aiohttp  # the caller made an aiohttp session: aiohttp is loaded already

            if not isinstance(session, aiohttp.ClientSession):
                raise TypeError(
                    f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
                )
        check_count(requests_per_minute, "requests_per_minute", optional=True)
        check_flag(allow_insecure_http, "allow_insecure_http")
        if hooks is not None and not isinstance(hooks, Hooks):
            raise TypeError(f"hooks must be a Hooks, got {type(hooks).__name__}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(
                f"clock must provide monotonic(), now() and sleep(), got {type(clock).__name__}"
            )
        if base_url is not None and not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        if api_key is None and session_token is None:
            # Only as a fallback: an explicit session token must not lose to a stale env key.
            api_key = os.environ.get(API_KEY_ENV) or None
        key = _secret(api_key)
        token = _secret(session_token, "session_token")
        # From here on the plaintext lives only inside SecretKeys (whose repr redacts), not
        # in this frame's locals, which error reporters capture when a check below raises.
        del api_key, session_token
        if key is None and token is None:
            raise ValueError(
                f"no API key: pass api_key=..., set the {API_KEY_ENV} environment variable, "
                "or pass session_token=..."
            )
        url = _check_base_url(
            base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
            allow_insecure_http=allow_insecure_http,
        )
        the_clock = clock or SystemClock()
        shared = Shared(
            transport=transport if transport is not None else AiohttpTransport(session),
            base_url=url,
            credentials=Credentials(key, token, USER_AGENT),
            clock=the_clock,
            hooks=hooks or Hooks(),
            limiter=(
                SlidingWindowLimiter(requests_per_minute, clock=the_clock)
                if requests_per_minute
                else None
            ),
            fixed_rate=requests_per_minute is not None,
        )
        self._init(Session(shared, options), owner=True)

    def _init(self, session: Session, *, owner: bool) -> None:
        self._session = session
        self._owner = owner
        self.sub_keys = SubKeys(session)

    def with_options(
        self,
        *,
        timeout: float | Literal[_Unset.UNSET] = UNSET,
        max_retries: int | Literal[_Unset.UNSET] = UNSET,
        deadline: float | Literal[_Unset.UNSET] | None = UNSET,
        max_retry_wait: float | Literal[_Unset.UNSET] = UNSET,
    ) -> AccountClient:
        """A client with other request settings that shares this one's session.

        An omitted argument keeps this client's setting; `deadline=None` removes a
        deadline. The copy shares the connection pool, the credential (a reissue through
        either switches both), the rate limiter and `rate_limit`. Closing it does nothing;
        close the original.
        """
        old = self._session.options
        options = Options(
            timeout=old.timeout if timeout is UNSET else timeout,
            max_retries=old.max_retries if max_retries is UNSET else max_retries,
            deadline=old.deadline if deadline is UNSET else deadline,
            max_retry_wait=old.max_retry_wait if max_retry_wait is UNSET else max_retry_wait,
        )
        clone = object.__new__(AccountClient)
        clone._init(self._session.with_options(options), owner=False)
        return clone

    def with_credential(
        self,
        api_key: str | SecretKey | None = None,
        *,
        session_token: str | SecretKey | None = None,
    ) -> AccountClient:
        """A copy that sends another credential and shares everything else.

        Give exactly one of `api_key` and `session_token` (a session JWT). The copy shares
        the connection pool (or injected transport), base URL, clock, hooks, request
        settings and rate limiter; it has its own credential, which a reissue through the
        copy switches (this client keeps sending its own), and no reload after a 401.
        Closing the copy does nothing; close the original.
        """
        key = _secret(api_key)
        token = _secret(session_token, "session_token")
        del api_key, session_token  # only SecretKeys in this frame's locals from here on
        if (key is None) == (token is None):
            raise ValueError("with_credential() takes exactly one of api_key and session_token")
        shared = self._session.shared
        copy = attrs.evolve(
            shared, credentials=Credentials(key, token, shared.credentials.user_agent)
        )
        clone = object.__new__(AccountClient)
        clone._init(Session(copy, self._session.options), owner=False)
        return clone

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> AccountClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport (a given one too). Idempotent.

        The client's own aiohttp session closes with it; an injected one never does.
        """
        if self._owner:
            await self._session.shared.transport.aclose()

    @property
    def closed(self) -> bool:
        """True once the client (or the client it was copied from) was closed."""
        return self._session.shared.transport.closed

    def __repr__(self) -> str:
        session = getattr(self, "_session", None)
        if session is None:  # a half-built client, e.g. in a traceback's captured locals
            return "AccountClient(<not initialised>)"
        shared = session.shared
        return (
            f"AccountClient(base_url={shared.base_url!r}, credential={shared.credentials.current})"
        )

    # -- state ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._session.shared.base_url

    @property
    def api_key(self) -> SecretKey | None:
        """The API key this client sends (after a reissue, the new one)."""
        return self._session.shared.credentials.api_key

    @property
    def rate_limit(self) -> RateLimitInfo | None:
        """What the latest response said about the rate limit, or None before any."""
        return self._session.shared.rate_limit

    @property
    def server_date(self) -> dt.datetime | None:
        """The server's time by the latest response's `Date` header, or None without one.

        The rotator measures a key's age against it, so a skewed local clock cannot make
        a key look due (or never due).
        """
        return self._session.shared.server_date

    def _server_now(self) -> dt.datetime | None:
        """The server's time now, estimated from the latest `Date` (None without one)."""
        return self._session.shared.server_now()

    @property
    def clock(self) -> Clock:
        """The clock the client waits on (a `FakeClock` in tests)."""
        return self._session.shared.clock

    def on_unauthorized(self, reload: Callable[[], Awaitable[SecretKey | None]] | None) -> None:
        """After a 401, ask `reload` for a newer key and retry once with it.

        `reload` returns the key to switch to, or None to let the 401 stand. It is never a
        reason to reissue. The `KeyRotator` installs its store here.
        """
        self._session.shared.credentials.reload = reload

    def _reserve_for_rotation(self, requests: int) -> None:
        """Keep `requests` of each credential's window for the rotator's own requests.

        The `KeyRotator` calls it: ordinary calls then leave that many sends of every
        window (at most a quarter of it) to its requests (`_ratelimit.rotation_requests`).
        """
        self._session.shared.reserve_for_rotation(requests)

    def use_key(self, api_key: str | SecretKey) -> None:
        """Send `api_key` from now on (this client and every `with_options` copy)."""
        key = _secret(api_key)
        if key is None:
            raise TypeError("api_key must be a str or SecretKey, got NoneType")
        self._session.shared.credentials.use(key)

    # -- routes ---------------------------------------------------------------------

    async def get_key(self, *, key: str | SecretKey | None = None) -> KeyInfo:
        """`GET /account/key`: metadata of the key in use (the root key for a session JWT).

        Also teaches the client's rate limiter the key's enforced rate, unless
        `requests_per_minute` was given. With `key`, describes that key instead, without
        changing what the client sends; a 401 then means that key does not authenticate.
        """
        if key is not None:
            token = _secret(key, "key")
            # Only the SecretKey (whose repr redacts) stays in this frame while it awaits.
            del key
            assert token is not None
            return await self._active_root(token)
        info = (await self._session.request("GET", "/account/key", KeyEnvelope)).key
        self._session.shared.learn_rate(info.effective_rate_requests_per_minute)
        return info

    async def reissue_key(
        self,
        *,
        use_new_key: bool = True,
        on_lost: Callable[[KeyInfo], object] | None = None,
    ) -> ReissuedKey:
        """`POST /account/key/reissue`: replace the root key, revoking it and every child.

        The new key is in the result, once. With `use_new_key` (the default) the client
        sends it from then on. The POST is never blindly retried: after an ambiguous
        failure the old credential is probed, and the reissue is repeated only if it
        provably did not happen. Raises `KeyLostError` if it happened and the response
        was lost, `ReissueOutcomeUnknownError` if the probe cannot tell, or if an attempt
        timed out (the server may still carry it out) and every retry failed.

        With a session JWT, an attempt that took effect but lost its response is repeated
        (revoking only the lost key); `on_lost`, if given, is first called with the lost
        key's `KeyInfo`, so a caller can count every reissue that took effect.
        """
        credentials = self._session.shared.credentials
        token = credentials.current
        run = _ReissueRun(self, token, via_jwt=credentials.api_key is None, on_lost=on_lost)
        run.before = await self._active_root(token)
        try:
            answer = await self._session.request(
                "POST",
                "/account/key/reissue",
                ReissueAnswer,
                token=token,
                on_ambiguous=run.prove_not_applied,
            )
        except (OutcomeUnknownError, KeyLostError):
            raise
        except CS2CapError as exc:
            final = run.final_error(exc)
            if final is exc:
                raise
            raise final from exc
        new = self._reissued(answer)
        if use_new_key:
            credentials.use(new.key)
        return new

    def _reissued(self, answer: ReissueAnswer) -> ReissuedKey:
        """The once-shown answer as a `ReissuedKey`, filling in what could not be read.

        The key and its id are all that matter now; a missing prefix is taken from the key,
        a missing time is the time the answer arrived, and each gap is logged by name.
        """
        if answer.unreadable:
            logger.warning(
                "the reissue answer had unreadable fields (%s); kept the new key %s and "
                "filled them in",
                ", ".join(answer.unreadable),
                answer.id,
            )
        key = answer.key
        return ReissuedKey(
            key=key,
            key_prefix=answer.key_prefix
            if answer.key_prefix is not None
            else key.reveal().rpartition("_")[0],
            id=answer.id,
            created_at=answer.created_at or self.clock.now(),
            message=answer.message,
        )

    async def _active_root(self, token: SecretKey) -> KeyInfo:
        """`GET /account/key` with `token`: the key it names (the root key for a JWT)."""
        return (await self._session.request("GET", "/account/key", KeyEnvelope, token=token)).key


class _ReissueRun:
    """One `reissue_key()` call, across its attempts: what was in force, what was probed.

    The session consults `prove_not_applied` after an attempt that failed once sent; it
    returns (the attempt is resent) only when `verdict()` says the reissue did not happen,
    or, with a session JWT, that it happened and the lost key may be replaced.
    """

    def __init__(
        self,
        client: AccountClient,
        token: SecretKey,
        *,
        via_jwt: bool,
        on_lost: Callable[[KeyInfo], object] | None,
    ) -> None:
        self._client = client
        self._token = token
        self._via_jwt = via_jwt
        self._on_lost = on_lost
        self.before: KeyInfo
        # A probe found nothing had happened, so a later 401 means a late landing.
        self._probed = False
        # An attempt that timed out may still be carried out by the server later, after a
        # probe found it had not been: then no later failure proves nothing happened.
        self._in_flight = False

    async def prove_not_applied(self, error: CS2CapError) -> None:
        """Return if the reissue provably did not happen (or a lost key may be replaced)."""
        self._in_flight |= isinstance(error, APITimeoutError) and error.request_sent
        now: KeyInfo | None = None
        cause: CS2CapError = error
        seen: ProbeResult
        try:
            now = await self._client._active_root(self._token)
            seen = Answered(now.id, now.is_active)
        except AuthenticationError as exc:
            seen, cause = Refused(exc.code), exc
        except CS2CapError as exc:
            seen, cause = NoAnswer(), exc
        found = verdict(self.before.id, seen, via_jwt=self._via_jwt)
        if found is Verdict.RETRY:
            logger.info(
                "root key reissue did not take effect (%s); retrying", describe_error(error)
            )
            self._probed = True
            return
        if found is Verdict.REPLACE_LOST:
            assert now is not None
            logger.warning(
                "root key reissue took effect but its response was lost (%s); the lost "
                "key %s is the active one, reissuing again revokes only it",
                describe_error(error),
                now.id,
            )
            self.before = now
            if self._on_lost is not None:
                self._on_lost(now)
            return
        if found is Verdict.LOST:
            raise _key_lost(self.before.id) from error
        raise _outcome_unknown(self.before.id, cause) from error

    def final_error(self, error: CS2CapError) -> CS2CapError:
        """What the call raises when its last attempt failed with `error`."""
        if isinstance(error, AuthenticationError) and self._probed:
            # The probe saw the old key active, yet the retry finds it revoked: the first
            # attempt was still in flight at the server and has since completed.
            late = verdict(self.before.id, Refused(error.code), via_jwt=self._via_jwt)
            if late is Verdict.LOST:
                return _key_lost(self.before.id)
            return error
        if self._in_flight:
            return _outcome_unknown(self.before.id, error)
        return error


class _ChildReissueRun:
    """One `sub_keys.reissue()` call, across its attempts: the old child, and its probes.

    The session consults `prove_not_applied` after an attempt that failed once sent; it
    returns (the attempt is resent) only when `child_verdict()` says the old child is
    still active, so the reissue did not happen.
    """

    def __init__(self, sub_keys: SubKeys, key_id: str, before: KeyInfo) -> None:
        self._sub_keys = sub_keys
        self._key_id = key_id
        self._before = before
        self._probed = False  # a probe found nothing had happened
        self._in_flight = False  # an attempt timed out once sent: it may still land

    async def prove_not_applied(self, error: CS2CapError) -> None:
        """Return if the old child is still active: the reissue did not happen."""
        self._in_flight |= isinstance(error, APITimeoutError) and error.request_sent
        seen: ChildProbe
        cause: CS2CapError = error
        try:
            detail = await self._sub_keys.get(self._key_id)
            seen = Answered(detail.key.id, detail.key.is_active)
        except NotFoundError:
            seen = Gone()
        except AuthenticationError as exc:
            seen, cause = Refused(exc.code), exc
        except CS2CapError as exc:
            seen, cause = NoAnswer(), exc
        found = child_verdict(seen)
        if found is Verdict.RETRY:
            logger.info(
                "child key reissue did not take effect (%s); retrying", describe_error(error)
            )
            self._probed = True
            return
        if found is Verdict.LOST:
            raise self._lost() from error
        raise self._unknown(cause) from error

    def final_error(self, error: CS2CapError) -> CS2CapError:
        """What the call raises when its last attempt failed with `error`."""
        if isinstance(error, NotFoundError) and self._probed:
            # The probe saw the old child active, yet the retry finds it gone: the first
            # attempt was still in flight at the server and has since completed.
            return self._lost()
        if self._in_flight:
            return self._unknown(error)
        return error

    def _lost(self) -> SubKeyLostError:
        return SubKeyLostError(
            f"the child key {self._key_id} (named {self._before.name!r}) was reissued, but "
            "the response holding its new key was lost; the old child is revoked. Recover "
            "with the root key: client.sub_keys.recover(error) reissues the new child.",
            previous_key_id=self._key_id,
            name=self._before.name,
            previous_created_at=self._before.created_at,
        )

    def _unknown(self, cause: CS2CapError) -> SubKeyOutcomeUnknownError:
        return SubKeyOutcomeUnknownError(
            f"reissuing the child key {self._key_id} failed after it was sent, and whether "
            f"it took effect is unknown ({cause}); get the child key to check: if it is "
            "gone, recover its replacement as for SubKeyLostError",
            cause=cause,
        )


def _key_lost(key_id: str) -> KeyLostError:
    return KeyLostError(
        f"the root key {key_id} was reissued, but the response holding the new key was "
        "lost; the old key is revoked. Recover by reissuing with a session JWT: "
        "AccountClient(session_token=...)",
        previous_key_id=key_id,
    )


def _outcome_unknown(key_id: str, cause: CS2CapError) -> ReissueOutcomeUnknownError:
    return ReissueOutcomeUnknownError(
        f"could not tell whether the root key {key_id} was reissued ({cause}). Check with "
        "get_key() using the old key: 200 means nothing happened; if it is revoked, "
        "reissue with a session JWT.",
        cause=cause,
    )


class SubKeys:
    """Child keys of the account (`/account/sub-keys`): `client.sub_keys`."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def list(self, *, limit: int = 25, offset: int = 0) -> SubKeyPage:
        """One page of active child keys. The server clamps `limit` to 1..100."""
        check_int(limit, "limit")
        check_int(offset, "offset", low=0)
        params = {"limit": str(limit), "offset": str(offset)}
        return await self._session.request("GET", "/account/sub-keys", SubKeyPage, params=params)

    async def iterate(self, *, page_size: int = 100) -> AsyncIterator[SubKeyDetail]:
        """Every active child key, page after page, following `pagination.total`.

        Ends at an empty page even if `total` says more. A server whose pages bring no new
        key, or more than `MAX_ITERATED` keys, raises `MalformedResponseError` rather than
        paging forever.
        """
        check_int(page_size, "page_size", low=1, high=100)
        offset = 0
        seen: set[str] = set()
        while True:
            page = await self.list(limit=page_size, offset=offset)
            fresh = [detail for detail in page.keys if detail.key.id not in seen]
            if page.keys and not fresh:
                raise MalformedResponseError(
                    f"GET /account/sub-keys: the page at offset {offset} repeats keys already "
                    f"listed although total says {page.pagination.total}"
                )
            for detail in fresh:
                seen.add(detail.key.id)
                yield detail
            if len(seen) > MAX_ITERATED:
                raise MalformedResponseError(
                    f"GET /account/sub-keys: more than {MAX_ITERATED} child keys listed; "
                    "the account can hold far fewer"
                )
            offset += len(page.keys)
            if not page.keys or offset >= page.pagination.total:
                return

    async def create(
        self,
        name: str,
        *,
        quota_requests_per_month_override: int | None = None,
        rate_requests_per_minute_override: int | None = None,
    ) -> CreatedSubKey:
        """Create a child key; its plaintext is in the result, once.

        Not retried after an ambiguous failure (that could create two keys): raises
        `SubKeyOutcomeUnknownError` instead.
        """
        body: dict[str, Any] = {"name": name}
        if quota_requests_per_month_override is not None:
            body["quota_requests_per_month_override"] = quota_requests_per_month_override
        if rate_requests_per_minute_override is not None:
            body["rate_requests_per_minute_override"] = rate_requests_per_minute_override

        async def refuse(error: CS2CapError) -> None:
            raise SubKeyOutcomeUnknownError(
                f"creating child key {name!r} failed after the request was sent ({error}); "
                "a child key may have been created. List the child keys to check.",
                cause=error,
            ) from error

        return await self._session.request(
            "POST", "/account/sub-keys", CreatedSubKey, body=body, on_ambiguous=refuse
        )

    async def get(self, key_id: str) -> SubKeyDetail:
        """One child key's metadata and usage this month."""
        return await self._session.request("GET", _sub_key_path(key_id), SubKeyDetail)

    async def update(
        self,
        key_id: str,
        *,
        name: str | Literal[_Unset.UNSET] = UNSET,
        quota_requests_per_month_override: int | Literal[_Unset.UNSET] | None = UNSET,
        rate_requests_per_minute_override: int | Literal[_Unset.UNSET] | None = UNSET,
    ) -> SubKeyDetail:
        """Change a child key. An omitted argument is left alone; `None` removes an override."""
        fields = {
            "name": name,
            "quota_requests_per_month_override": quota_requests_per_month_override,
            "rate_requests_per_minute_override": rate_requests_per_minute_override,
        }
        body = {field: value for field, value in fields.items() if value is not UNSET}
        return await self._session.request("PATCH", _sub_key_path(key_id), SubKeyDetail, body=body)

    async def delete(self, key_id: str) -> RevokedSubKey:
        """Revoke a child key."""
        gone = await self._session.request("DELETE", _sub_key_path(key_id), RevokedSubKey)
        return gone if gone.key_id is not None else _with_key_id(gone, key_id)

    async def reissue(self, key_id: str) -> CreatedSubKey:
        """Replace a child key (name and overrides carry over); the old one is revoked.

        The root key and every other child are left alone. Like the root reissue, it is
        never blindly retried: after an ambiguous failure the old child is probed
        (`GET /account/sub-keys/{id}`), and the reissue is sent again only if that child
        is still active. Raises `SubKeyLostError` if it happened and the response was lost
        (`recover()` mends that with the root key alone), `SubKeyOutcomeUnknownError` if
        the probe cannot tell.
        """
        path = _sub_key_path(key_id)
        run = _ChildReissueRun(self, key_id, (await self.get(key_id)).key)
        try:
            return await self._session.request(
                "POST", path + "/reissue", CreatedSubKey, on_ambiguous=run.prove_not_applied
            )
        except (OutcomeUnknownError, SubKeyLostError):
            raise
        except CS2CapError as exc:
            final = run.final_error(exc)
            if final is exc:
                raise
            raise final from exc

    async def recover(self, lost: SubKeyLostError) -> CreatedSubKey:
        """Mend a lost child reissue: reissue the child it made, whose key never arrived.

        That child is the one active child with the lost one's name created after it;
        reissuing it revokes only it. `SubKeyOutcomeUnknownError` if there is none, or
        more than one, to choose from (nothing is reissued then).
        """
        if not isinstance(lost, SubKeyLostError):
            raise TypeError(f"recover() takes a SubKeyLostError, not {type(lost).__name__}")
        made = [
            detail.key
            async for detail in self.iterate()
            if detail.key.name == lost.name
            and detail.key.id != lost.previous_key_id
            and detail.key.is_active
            and detail.key.created_at >= lost.previous_created_at
        ]
        if len(made) != 1:
            found = "none" if not made else f"{len(made)} ({', '.join(k.id for k in made)})"
            raise SubKeyOutcomeUnknownError(
                f"could not tell which child key replaced {lost.previous_key_id} "
                f"(named {lost.name!r}): {found} active child keys of that name were "
                "created after it; nothing was reissued",
                cause=lost,
            )
        logger.warning(
            "recovering the lost reissue of child key %s: reissuing its replacement %s",
            lost.previous_key_id,
            made[0].id,
        )
        return await self.reissue(made[0].id)


def _with_key_id(gone: RevokedSubKey, key_id: str) -> RevokedSubKey:
    return RevokedSubKey(ok=gone.ok, key_id=key_id, revoked_at=gone.revoked_at)


def _sub_key_path(key_id: str) -> str:
    if not isinstance(key_id, str):
        raise TypeError(f"key_id must be a string, got {type(key_id).__name__}")
    if not key_id:
        raise ValueError("key_id must be a non-empty string")
    if redact_text(key_id) != key_id:
        # Sent, it would sit in the URL, the server's logs and every error message.
        raise ValueError(
            "key_id looks like an API key or a token, not a key id; pass the child key's "
            "id (e.g. made.key_info.id)"
        )
    return "/account/sub-keys/" + urllib.parse.quote(key_id, safe="")
