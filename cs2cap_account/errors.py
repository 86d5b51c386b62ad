"""Every error the SDK raises.

```
CS2CapError
├── APIStatusError                 the server answered with an error status
│   ├── BadRequestError            400
│   ├── AuthenticationError        401
│   ├── PermissionDeniedError      403
│   ├── NotFoundError              404
│   ├── ConflictError              409
│   ├── UnprocessableEntityError   422  (`detail` is a tuple of ValidationIssue)
│   ├── RateLimitError             429  (`retry_after`, `rate_limit`)
│   └── InternalServerError        >= 500
├── APIConnectionError             no usable answer: refused, dropped, reset
│   └── APITimeoutError            no answer in time
├── OutcomeUnknownError            a request that changes keys may or may not have acted
│   ├── ReissueOutcomeUnknownError a root-key reissue may or may not have happened
│   └── SubKeyOutcomeUnknownError  a child key may or may not have been created or reissued
├── KeyLostError                   the reissue happened but its response was lost
├── SubKeyLostError                a child reissue happened but its response was lost
├── MalformedResponseError         the body was not what the API documents
├── RotationError                  the KeyRotator could not complete a rotation
└── StoreError                     a key store could not be read or written
    └── StaleGenerationError       a save was fenced off: the store holds a newer key
```

No message or repr in this module ever holds a plaintext key: server-supplied text is
passed through `redact_text` before it is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from multidict import CIMultiDict

from cs2cap_account._secret import redact_text

if TYPE_CHECKING:
    from cs2cap_account._models import RateLimitInfo

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CS2CapError",
    "ConflictError",
    "InternalServerError",
    "KeyLostError",
    "MalformedResponseError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReissueOutcomeUnknownError",
    "RotationError",
    "StaleGenerationError",
    "StoreError",
    "SubKeyLostError",
    "SubKeyOutcomeUnknownError",
    "UnprocessableEntityError",
    "ValidationIssue",
]


@attrs.frozen
class ValidationIssue:
    """One item of a 422 response's `detail` list."""

    type: str
    loc: tuple[str | int, ...]
    msg: str
    # What the server echoes back may hold anything the request sent: kept, never shown.
    input: Any = attrs.field(default=None, repr=False)
    ctx: Mapping[str, Any] | None = attrs.field(default=None, repr=False)


def _redact_detail(
    detail: str | tuple[ValidationIssue, ...] | None,
) -> str | tuple[ValidationIssue, ...] | None:
    if isinstance(detail, str):
        return redact_text(detail)
    if detail is None:
        return None
    return tuple(
        attrs.evolve(
            issue,
            msg=redact_text(issue.msg),
            input=redact_text(issue.input) if isinstance(issue.input, str) else issue.input,
        )
        for issue in detail
    )


class CS2CapError(Exception):
    """Base class of every error raised by cs2cap-account."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, so rebuild from the instance's state
        # rather than from `args`: errors survive pickling (process pools, queues).
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(
    cls: type[CS2CapError], args: tuple[Any, ...], state: dict[str, Any]
) -> CS2CapError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class APIStatusError(CS2CapError):
    """The server answered with a 4xx or 5xx status.

    `code` is the API's stable machine-readable code (`AUTH_API_KEY_REVOKED`, …) or None
    when the body had none; `detail` is the server's text, or for a 422 a tuple of
    `ValidationIssue`; `headers` are the response headers.
    """

    status_code: int

    def __init__(
        self,
        *,
        status_code: int,
        method: str,
        path: str,
        code: str | None = None,
        detail: str | tuple[ValidationIssue, ...] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        self.code = code
        self.detail = _redact_detail(detail)
        # Header names are case-insensitive (and lowercased by HTTP/2 proxies).
        self.headers: Mapping[str, str] = CIMultiDict(headers or {})
        super().__init__(self._describe())

    def _describe(self) -> str:
        what = f"{self.method} {self.path} failed with HTTP {self.status_code}"
        if self.code:
            what += f" {self.code}"
        if isinstance(self.detail, tuple):
            issues = "; ".join(
                f"{'.'.join(str(part) for part in issue.loc)}: {issue.msg}" for issue in self.detail
            )
            return f"{what}: {redact_text(issues)}" if issues else what
        if self.detail:
            return f"{what}: {redact_text(self.detail)}"
        return what


class BadRequestError(APIStatusError):
    """HTTP 400."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """HTTP 401: no credential, an unknown key, or a revoked key (`code` says which)."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """HTTP 403: e.g. a child key on a key-management route, or an unverified email."""

    status_code = 403


class NotFoundError(APIStatusError):
    """HTTP 404."""

    status_code = 404


class ConflictError(APIStatusError):
    """HTTP 409: e.g. a 26th child key."""

    status_code = 409


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the request body or parameters failed validation.

    `detail` holds the server's items as a tuple of `ValidationIssue` when it sent them.
    """

    status_code = 422


class RateLimitError(APIStatusError):
    """HTTP 429: the per-minute limit or the monthly quota was hit.

    `retry_after` is the wait the server asked for, in seconds (None if it gave none);
    `rate_limit` is the `RateLimitInfo` read from the response headers. A monthly-quota
    error (`code == "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED"`) is never retried.
    """

    status_code = 429

    def __init__(
        self,
        *,
        status_code: int = 429,
        method: str,
        path: str,
        code: str | None = None,
        detail: str | tuple[ValidationIssue, ...] | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimitInfo | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        super().__init__(
            status_code=status_code,
            method=method,
            path=path,
            code=code,
            detail=detail,
            headers=headers,
        )

    @property
    def is_monthly_quota(self) -> bool:
        """True when the monthly quota, not the per-minute limit, was exhausted."""
        return self.code == "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED"

    def _describe(self) -> str:
        what = super()._describe()
        if self.is_monthly_quota:
            reset = self.rate_limit.reset_at if self.rate_limit else None
            when = reset.isoformat() if reset else "at the start of the next billing period"
            return f"{what} (monthly quota; it resets {when}; not retried)"
        if self.retry_after is not None:
            return f"{what} (retry after {self.retry_after:g} s)"
        return what


class InternalServerError(APIStatusError):
    """HTTP 500 or above."""


class APIConnectionError(CS2CapError):
    """The request got no usable answer: refused, reset, or dropped mid-response.

    `request_sent` is False only when the connection was never established, which
    proves the server did not act on the request.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """No answer arrived within the timeout."""


class OutcomeUnknownError(CS2CapError):
    """A request that changes keys failed after it was sent, and its outcome is unknown.

    Nothing could tell whether the server acted on it. Raised after a dropped connection,
    a timeout, a 5xx or a malformed body alike, so it is not an `APIConnectionError`:
    `except APIConnectionError` never catches a server's 500 in disguise. `cause` is the
    failure that left the outcome open: the probe's own, when a probe got no answer.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class ReissueOutcomeUnknownError(OutcomeUnknownError):
    """A root-key reissue failed after it was sent, and the probe could not tell.

    The old key may or may not still be active. Check with `get_key()` using the old key
    (200 → nothing happened) or, if it is revoked, reissue with a session JWT.
    """


class SubKeyOutcomeUnknownError(OutcomeUnknownError):
    """A child-key create or reissue failed once sent; whether it took effect is unknown.

    It is not retried (that could create a second key). List the child keys to check:
    a stray one created by it can be deleted (its plaintext was never received); for a
    reissue, if the old child is gone, recover the new one as for `SubKeyLostError`.
    """


class SubKeyLostError(CS2CapError):
    """A child-key reissue happened, but its response, the only copy of the key, was lost.

    The old child (`previous_key_id`, named `name`) is revoked; the new child exists, with
    the same name and overrides, its plaintext unknown. The root key alone recovers it:
    `await client.sub_keys.recover(error)` finds that child (the one active child of the
    name created after the old one) and reissues it.
    """

    def __init__(
        self,
        message: str,
        *,
        previous_key_id: str,
        name: str | None,
        previous_created_at: dt.datetime,
    ) -> None:
        super().__init__(message)
        self.previous_key_id = previous_key_id
        self.name = name
        self.previous_created_at = previous_created_at


class KeyLostError(CS2CapError):
    """The root-key reissue happened, but its response, the only copy of the key, was lost.

    The old key (`previous_key_id`) is revoked and the new one is unknown. To recover,
    reissue again with a session JWT (`AccountClient(session_token=...)`): that revokes
    only the lost key and returns a fresh one.
    """

    def __init__(self, message: str, *, previous_key_id: str | None) -> None:
        super().__init__(message)
        self.previous_key_id = previous_key_id


class MalformedResponseError(CS2CapError):
    """The response body was not JSON, or did not have the documented shape.

    `field` names the offending field as a path (`key.created_at`) when one is known.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        field: str | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(redact_text(message))
        self.status_code = status_code
        self.field = field
        self.content_type = content_type


class RotationError(CS2CapError):
    """A key rotation did not complete. The message says what state the key is in."""

    def __init__(self, message: str, *, previous_key_id: str | None = None) -> None:
        super().__init__(message)
        self.previous_key_id = previous_key_id


class StoreError(CS2CapError):
    """A key store could not be read or written (permissions, disk, network, format)."""


class StaleGenerationError(StoreError):
    """A save was refused because the store already holds a newer generation.

    `stored_generation` is the generation the store holds; `expected_generation` the one
    the writer based its change on.
    """

    def __init__(self, message: str, *, expected_generation: int, stored_generation: int) -> None:
        super().__init__(message)
        self.expected_generation = expected_generation
        self.stored_generation = stored_generation


STATUS_ERRORS: Mapping[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return InternalServerError
    return STATUS_ERRORS.get(status, APIStatusError)
