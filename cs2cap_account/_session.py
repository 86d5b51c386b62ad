"""The session layer: the one path every request takes.

    request()  ── for each attempt ──>  limiter ─> transport (one HTTP attempt)
                                         ─> rate-limit headers ─> status ─> model or error
               <── on failure: may it be retried?  (safe to repeat, or proven not applied)
                   wait max(backoff, Retry-After), within max_retry_wait and the deadline

Retries use tenacity's wait and stop strategies through `_retry.AttemptBudget` (`_retry`
is the one place that imports tenacity; the rotator takes its retries from there too).
The transport (`_transport.Transport`: aiohttp by default, or any injected one) makes each
single attempt and translates its failures into `APIConnectionError`. A request
that is not safe to repeat (a POST) is retried only when the server provably did not act
on it: the connection was never made, or it answered 429. Any other failure after it was
sent is *ambiguous*; the caller may pass `on_ambiguous`, which either proves the request
did not take effect (it returns, and the request is retried) or raises.

The optional deadline bounds the whole call: no wait (backoff, `Retry-After` or the
limiter's) is started that would reach it, and each attempt's timeout is cut to the time
left. `Retry-After` is honoured on any retryable status, not only on 429.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import attrs

from cs2cap_account._arguments import check_count, check_seconds
from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._converter import structure
from cs2cap_account._models import RateLimitInfo
from cs2cap_account._ratelimit import SlidingWindowLimiter, parse_rate_limit, parse_retry_after
from cs2cap_account._retry import AttemptBudget
from cs2cap_account._secret import BearerHeaders, SecretKey, forget_frames
from cs2cap_account._transport import Response, Transport
from cs2cap_account.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    CS2CapError,
    InternalServerError,
    MalformedResponseError,
    RateLimitError,
    ValidationIssue,
    error_class_for,
)

__all__ = [
    "Credentials",
    "Hooks",
    "Options",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "Session",
    "Shared",
]

T = TypeVar("T")

logger: Final = logging.getLogger("cs2cap_account")

# A request refused with 401 is sent again, with a newer credential, at most this often.
_MAX_CREDENTIAL_SWITCHES: Final = 1
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
PER_MINUTE_LIMIT: Final = "RATE_LIMIT_EXCEEDED"
_RATE_HEADERS: Final = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Tier",
    "Retry-After",
)


@attrs.frozen
class RequestEvent:
    """An attempt is about to be sent."""

    method: str
    path: str
    attempt: int


@attrs.frozen
class ResponseEvent:
    """An attempt got an HTTP response (of any status). `elapsed` is in seconds."""

    method: str
    path: str
    attempt: int
    status_code: int
    elapsed: float


@attrs.frozen
class RetryEvent:
    """An attempt failed and will be retried after `wait` seconds."""

    method: str
    path: str
    attempt: int
    wait: float
    error: CS2CapError


def _callables(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """A sequence of callables (a list or tuple), not one callable or a string."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(
            f"{attribute.name} must be a list or tuple of callables, got {type(value).__name__}"
        )
    for hook in value:
        if not callable(hook):
            raise TypeError(f"each of {attribute.name} must be callable, got {type(hook).__name__}")


@attrs.frozen
class Hooks:
    """Instrumentation callbacks, for metrics. Each is called synchronously with an event.

    Each argument is a list or tuple of callables. A hook that raises is logged and
    ignored; it never fails the request.
    """

    on_request: Sequence[Callable[[RequestEvent], object]] = attrs.field(
        default=(), validator=_callables
    )
    on_response: Sequence[Callable[[ResponseEvent], object]] = attrs.field(
        default=(), validator=_callables
    )
    on_retry: Sequence[Callable[[RetryEvent], object]] = attrs.field(
        default=(), validator=_callables
    )


@attrs.frozen
class Options:
    """Per-client request settings; `with_options()` makes a copy with some changed.

    Checked when made: `timeout` and `deadline` (or None) are positive and finite,
    `max_retries` an int of 0 or more, `max_retry_wait` 0 or more (infinity: honour any
    `Retry-After`); a bool is not a number, and NaN is refused everywhere.
    """

    timeout: float = 30.0
    max_retries: int = 2
    deadline: float | None = None
    max_retry_wait: float = 60.0

    def __attrs_post_init__(self) -> None:
        check_seconds(self.timeout, "timeout")
        check_count(self.max_retries, "max_retries")
        check_seconds(self.deadline, "deadline", optional=True)
        check_seconds(self.max_retry_wait, "max_retry_wait", zero=True, infinite=True)

    @property
    def budget(self) -> AttemptBudget:
        """How many attempts these options allow, and the backoff between them."""
        return AttemptBudget(self.max_retries + 1)


def _bearer_headers(token: SecretKey, user_agent: str) -> BearerHeaders:
    return BearerHeaders(token, {"Accept": "application/json", "User-Agent": user_agent})


@attrs.define
class Credentials:
    """The credential a client (and every `with_options` copy of it) sends.

    The API key wins over the session token when both are set. `reload`, when set (the
    KeyRotator sets it), is asked for the stored key after a 401; it never reissues.
    """

    _api_key: SecretKey | None
    _session_token: SecretKey | None
    user_agent: str
    reload: Callable[[], Awaitable[SecretKey | None]] | None = attrs.field(default=None, repr=False)
    # Told after every switch: the limiter moves calls queued for the old key to the new.
    on_switch: Callable[[], None] | None = attrs.field(default=None, repr=False)
    # Built once per credential; their repr redacts the key they carry.
    _headers: BearerHeaders = attrs.field(init=False, repr=False)
    _json_headers: BearerHeaders = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._rebuild()

    def _rebuild(self) -> None:
        self._headers = _bearer_headers(self.current, self.user_agent)
        self._json_headers = self._headers.with_header("Content-Type", "application/json")

    @property
    def current(self) -> SecretKey:
        """The credential sent now."""
        token = self._api_key or self._session_token
        assert token is not None  # AccountClient refuses to start without one
        return token

    @property
    def api_key(self) -> SecretKey | None:
        """The API key, if the client has one."""
        return self._api_key

    @property
    def session_token(self) -> SecretKey | None:
        """The session JWT, if the client has one."""
        return self._session_token

    def use(self, api_key: SecretKey) -> None:
        """Switch every later request to `api_key`."""
        self._api_key = api_key
        self._rebuild()
        if self.on_switch is not None:
            self.on_switch()

    def headers(self, *, json_body: bool, token: SecretKey | None = None) -> BearerHeaders:
        """Request headers for the current credential, or for `token` when given.

        A `BearerHeaders`: a mapping whose repr redacts the credential, so no frame on the
        request path holds the plaintext in a local that an error reporter would capture.
        """
        if token is not None:
            headers = _bearer_headers(token, self.user_agent)
            return headers.with_header("Content-Type", "application/json") if json_body else headers
        return self._json_headers if json_body else self._headers


@attrs.define
class Shared:
    """State shared by a client and all of its `with_options` copies."""

    transport: Transport
    base_url: str
    credentials: Credentials
    clock: Clock = attrs.field(factory=SystemClock)
    hooks: Hooks = attrs.field(factory=Hooks)
    limiter: SlidingWindowLimiter | None = None
    fixed_rate: bool = False
    # Sends of each window kept for the rotator's requests (set once a rotator paces this).
    rotation_reserve: int = 0
    _rate_headers: Mapping[str, str] | None = attrs.field(init=False, default=None)
    _rate_seen_at: dt.datetime | None = attrs.field(init=False, default=None)
    _rate_limit: RateLimitInfo | None = attrs.field(init=False, default=None)
    _server_date: str | None = attrs.field(init=False, default=None)
    _server_date_at: float = attrs.field(init=False, default=0.0)  # monotonic, on `clock`

    def __attrs_post_init__(self) -> None:
        self._wire_limiter()

    def _wire_limiter(self) -> None:
        limiter = self.limiter
        if limiter is not None:
            limiter.reserve = max(limiter.reserve, self.rotation_reserve)
            self.credentials.on_switch = limiter.changed

    def reserve_for_rotation(self, requests: int) -> None:
        """Keep `requests` of each window (at most a quarter) for the rotator's requests."""
        self.rotation_reserve = requests
        self._wire_limiter()

    def learn_rate(self, requests_per_minute: int) -> None:
        """Pace requests at the rate the server reported for this key (unless fixed).

        Call it right after the response that reported the rate. A new limiter starts
        with the requests the server already counted in its window (from that response's
        `X-RateLimit-Remaining`; at least the reporting request itself), so the first
        minute of pacing does not overshoot the server's limit.
        """
        if self.fixed_rate or requests_per_minute <= 0:
            return
        if self.limiter is not None:
            self.limiter.requests_per_minute = requests_per_minute
            return
        limiter = SlidingWindowLimiter(requests_per_minute, clock=self.clock)
        info = self.rate_limit
        used = 1
        if info is not None and info.remaining is not None:
            used = max(used, requests_per_minute - info.remaining)
        # The reporting response was for the client's key: its window, no other.
        limiter.note_sent(min(used, requests_per_minute), credential=self.credentials.current)
        self.limiter = limiter
        self._wire_limiter()

    def saw_headers(self, headers: Mapping[str, str]) -> None:
        """Keep the latest response's rate-limit headers; parsed only when asked for.

        The time they arrived is kept with them: relative values (`X-RateLimit-Reset` in
        seconds, `Retry-After`) count from the response, not from when they are read.
        The `Date` header is kept as well (None when the latest response had none).
        """
        self._server_date = headers.get("Date")
        self._server_date_at = self.clock.monotonic()
        for name in _RATE_HEADERS:  # a loop, not any(): this runs on every response
            if name in headers:
                self._rate_headers = headers
                self._rate_seen_at = self.clock.now()
                self._rate_limit = None
                return

    @property
    def rate_limit(self) -> RateLimitInfo | None:
        """`RateLimitInfo` from the latest response that carried rate-limit headers."""
        if self._rate_limit is None and self._rate_headers is not None:
            self._rate_limit = parse_rate_limit(self._rate_headers, now=self._rate_seen_at)
        return self._rate_limit

    @property
    def server_date(self) -> dt.datetime | None:
        """The server's time as the latest response's `Date` header gave it (UTC).

        None before any response, or when the latest had no readable `Date`.
        """
        if self._server_date is None:
            return None
        try:
            moment = email.utils.parsedate_to_datetime(self._server_date)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc)

    def server_now(self) -> dt.datetime | None:
        """The server's time now, estimated: the latest `Date` plus the time since it came.

        The time since is monotonic, so a local wall clock that is off does not move it.
        None without a `Date`.
        """
        date = self.server_date
        if date is None:
            return None
        return date + dt.timedelta(seconds=max(self.clock.monotonic() - self._server_date_at, 0))


OnAmbiguous = Callable[[CS2CapError], Awaitable[None]]


@attrs.define
class Session:
    """Sends requests with the retry policy of `options`, sharing `shared` state."""

    shared: Shared
    options: Options
    _budget: AttemptBudget = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._budget = self.options.budget

    def with_options(self, options: Options) -> Session:
        """A session with other options and the same shared state."""
        return Session(self.shared, options)

    async def request(
        self,
        method: str,
        path: str,
        cl: type[T],
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        token: SecretKey | None = None,
        on_ambiguous: OnAmbiguous | None = None,
    ) -> T:
        """Send `method path` and return the body structured as `cl`, retrying as allowed.

        `token` overrides the client's credential for this request (and turns off the
        reload-after-401). `on_ambiguous` is consulted when a request that is not safe to
        repeat failed after it was sent.
        """
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        idempotent = method != "POST"
        clock = self.shared.clock
        deadline = (
            None if self.options.deadline is None else clock.monotonic() + self.options.deadline
        )
        attempt = 1
        switches = 0
        while True:
            limiter = self.shared.limiter
            if deadline is None and limiter is None:
                timeout = self.options.timeout  # nothing to wait for: skip _admit's await
            else:
                timeout = await self._admit(method, path, deadline, token)
            sent_with = self.shared.credentials.current
            admitted_at = 0.0 if limiter is None else limiter.admitted_at
            try:
                return await self._attempt(method, path, cl, params, data, token, attempt, timeout)
            except CS2CapError as exc:
                error = exc
            finally:
                if limiter is not None:
                    limiter.settle(token if token is not None else sent_with, admitted_at)
            if (
                isinstance(error, AuthenticationError)
                and token is None
                and switches < _MAX_CREDENTIAL_SWITCHES
                and await self._newer_credential(sent_with)
            ):
                switches += 1
                continue
            if not self._retryable(error, idempotent=idempotent):
                if on_ambiguous is None or not _is_ambiguous(error):
                    raise error
                await on_ambiguous(error)  # returns only if the request provably did nothing
            backoff = self._budget.backoff(attempt)
            if backoff is None:
                raise error
            retry_after = _retry_after(error, clock)
            if retry_after is not None and retry_after > self.options.max_retry_wait:
                raise error
            wait = max(backoff, retry_after or 0.0)
            # Waiting until the deadline would leave no time for the next attempt.
            if deadline is not None and clock.monotonic() + wait >= deadline:
                raise error
            self._announce_retry(RetryEvent(method, path, attempt, wait, error))
            await clock.sleep(wait)
            attempt += 1

    async def _admit(
        self, method: str, path: str, deadline: float | None, token: SecretKey | None
    ) -> float:
        """Wait for the rate limiter; return the next attempt's timeout, within the deadline.

        The request waits in the window of the credential it will be sent with: `token`,
        or the client's credential as it is when the request's turn comes (a key switched
        meanwhile moves it to the new key's window). Raises `APITimeoutError` (nothing was
        sent) when the deadline leaves no time.
        """
        shared = self.shared
        limiter = shared.limiter
        if limiter is not None:
            credentials = shared.credentials

            def credential() -> SecretKey:
                return token if token is not None else credentials.current

            if not await limiter.acquire(deadline=deadline, credential=credential):
                raise self._out_of_time(method, path, "the client-side rate limit")
        if deadline is None:
            return self.options.timeout
        remaining = deadline - shared.clock.monotonic()
        if remaining <= 0:
            raise self._out_of_time(method, path, "earlier attempts")
        return min(self.options.timeout, remaining)

    def _out_of_time(self, method: str, path: str, spent_on: str) -> APITimeoutError:
        return APITimeoutError(
            f"{method} {path}: the {self.options.deadline:g} s deadline was used up by "
            f"{spent_on}; the request was not sent",
            request_sent=False,
        )

    async def _attempt(
        self,
        method: str,
        path: str,
        cl: type[T],
        params: Mapping[str, str] | None,
        data: bytes | None,
        token: SecretKey | None,
        attempt: int,
        timeout: float,
    ) -> T:
        shared = self.shared
        hooks = shared.hooks
        if hooks.on_request:
            _call_hooks(hooks.on_request, RequestEvent(method, path, attempt))
        headers = shared.credentials.headers(json_body=data is not None, token=token)
        started = time.perf_counter()
        try:
            resp = await shared.transport.send(
                method,
                shared.base_url + path,
                headers=headers,
                params=params,
                body=data,
                timeout=timeout,
            )
        except APIConnectionError as exc:
            _log_attempt(method, path, type(exc).__name__, attempt, started)
            raise
        _log_attempt(method, path, resp.status, attempt, started)
        shared.saw_headers(resp.headers)
        if hooks.on_response:
            elapsed = time.perf_counter() - started
            _call_hooks(
                hooks.on_response, ResponseEvent(method, path, attempt, resp.status, elapsed)
            )
        if resp.status >= 400:
            raise _status_error(method, path, resp, shared.clock)
        return _parse(resp, cl)

    @staticmethod
    def _retryable(error: CS2CapError, *, idempotent: bool) -> bool:
        if isinstance(error, RateLimitError):
            return error.code in (None, PER_MINUTE_LIMIT)
        if isinstance(error, APIConnectionError):
            return idempotent or not error.request_sent
        if isinstance(error, APIStatusError):
            return idempotent and error.status_code in RETRYABLE_STATUS
        return False

    async def _newer_credential(self, sent_with: SecretKey) -> bool:
        """After a 401, tell whether a credential newer than the one sent is at hand.

        The client may have switched keys while the request was in flight (a rotation in
        this process); if not, `reload` (the rotator's store) may know a newer key. Either
        way the request is sent again with it; nothing here ever reissues.
        """
        credentials = self.shared.credentials
        if credentials.current == sent_with and credentials.reload is not None:
            fresh = await credentials.reload()
            if fresh is not None and fresh != credentials.api_key:
                logger.info("reloaded the API key from the store after a 401: now %s", fresh)
                credentials.use(fresh)
        return credentials.current != sent_with

    def _announce_retry(self, event: RetryEvent) -> None:
        logger.info(
            "retrying %s %s in %.2f s after %s (attempt %d of %d)",
            event.method,
            event.path,
            event.wait,
            describe_error(event.error),
            event.attempt + 1,
            self.options.max_retries + 1,
        )
        if self.shared.hooks.on_retry:
            _call_hooks(self.shared.hooks.on_retry, event)


def _retry_after(error: CS2CapError, clock: Clock) -> float | None:
    """The wait the server asked for: `Retry-After` on a 429, or on a retryable 5xx/408."""
    if isinstance(error, RateLimitError):
        return error.retry_after
    if isinstance(error, APIStatusError):
        for name, value in error.headers.items():
            if name.lower() == "retry-after":
                return parse_retry_after(value, now=clock.now())
    return None


def _is_ambiguous(error: CS2CapError) -> bool:
    """A failure after which the server may or may not have acted on the request."""
    if isinstance(error, APIConnectionError):
        return error.request_sent
    if isinstance(error, InternalServerError | MalformedResponseError):
        return True
    return isinstance(error, APIStatusError) and error.status_code == 408


def describe_error(error: CS2CapError) -> str:
    """A short, loggable name for `error`: its status and code, or its type.

    Never the server's `detail` text: log lines carry no part of a response body.
    """
    if isinstance(error, APIStatusError):
        return f"HTTP {error.status_code}" + (f" {error.code}" if error.code else "")
    return type(error).__name__


def _log_attempt(method: str, path: str, outcome: object, attempt: int, started: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        logger.debug(
            "%s %s -> %s (attempt %d, %.1f ms)", method, path, outcome, attempt, elapsed_ms
        )


def _call_hooks(hooks: Sequence[Callable[[Any], object]], event: object) -> None:
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("a %s hook raised; ignored", type(event).__name__)


def _parse(resp: Response, cl: type[T]) -> T:
    """The body of a 2xx response structured as `cl`, or `MalformedResponseError`.

    A body that fails to parse may hold a once-shown key (a reissue that took effect but
    came back mangled): the decoder's, the converter's and their causes' frames held it in
    their locals (`s`, `data`, `value`, `body`). Their tracebacks are detached before the
    error goes on, so no error reporter capturing locals can ship that key; the message
    names the field at fault, and the error's traceback starts here, where only `resp`
    (whose repr shows the body's length, not its bytes) is in scope.
    """
    try:
        return structure(_decode(resp), cl, status_code=resp.status)
    except MalformedResponseError as exc:
        raise forget_frames(exc)  # noqa: B904 - re-raised as it is, without its frames


def _decode(resp: Response) -> Any:
    try:
        return json.loads(resp.body)
    except (ValueError, RecursionError) as exc:
        kind = resp.content_type or "no content type"
        raise MalformedResponseError(
            f"HTTP {resp.status}: expected a JSON body, got {kind} ({len(resp.body)} bytes)",
            status_code=resp.status,
            content_type=resp.content_type,
        ) from exc


def _status_error(method: str, path: str, resp: Response, clock: Clock) -> APIStatusError:
    code, detail = _error_fields(resp.body)
    cls = error_class_for(resp.status)
    if cls is RateLimitError:
        info = parse_rate_limit(resp.headers, now=clock.now())
        return RateLimitError(
            method=method,
            path=path,
            code=code,
            detail=detail,
            headers=resp.headers,
            retry_after=info.retry_after if info else None,
            rate_limit=info,
        )
    return cls(
        status_code=resp.status,
        method=method,
        path=path,
        code=code,
        detail=detail,
        headers=resp.headers,
    )


def _error_fields(body: bytes) -> tuple[str | None, str | tuple[ValidationIssue, ...] | None]:
    """`code` and `detail` of an error body; (None, None) when it is not the API's JSON."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("code")
    detail = data.get("detail")
    if isinstance(detail, list):
        issues = []
        for item in detail:
            try:
                issues.append(structure(item, ValidationIssue))
            except MalformedResponseError:
                continue
        return (code if isinstance(code, str) else None), tuple(issues)
    return (code if isinstance(code, str) else None), (detail if isinstance(detail, str) else None)
