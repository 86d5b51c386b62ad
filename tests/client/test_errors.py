"""Every error status maps to its exception class, with `code` and `detail` parsed."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CS2CapError,
    FakeClock,
    InternalServerError,
    KeyLostError,
    MalformedResponseError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RateLimitInfo,
    ReissueOutcomeUnknownError,
    RotationError,
    StaleGenerationError,
    StoreError,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
    UnprocessableEntityError,
    ValidationIssue,
)
from cs2cap_account.errors import error_class_for

from ._payloads import (
    BASE_URL,
    CHILD_ID,
    ROOT_KEY,
    calls,
    child_info,
    created,
    detail,
    error,
    key_info,
    total_calls,
    url,
)

SUB_KEY_PATH = f"/account/sub-keys/{CHILD_ID}"


@pytest.fixture
async def strict(clock: FakeClock) -> Any:
    """A client that never retries, so one mocked response is enough."""
    async with AccountClient(
        ROOT_KEY, base_url=BASE_URL, clock=clock, max_retries=0, requests_per_minute=0
    ) as account:
        yield account


STATUS_CASES: list[tuple[int, type[APIStatusError], str]] = [
    (400, BadRequestError, "BAD_REQUEST"),
    (401, AuthenticationError, "AUTH_INVALID_API_KEY"),
    (403, PermissionDeniedError, "FORBIDDEN"),
    (404, NotFoundError, "SUB_KEY_NOT_FOUND"),
    (409, ConflictError, "SUB_KEY_LIMIT_REACHED"),
    (422, UnprocessableEntityError, "VALIDATION_ERROR"),
    (429, RateLimitError, "RATE_LIMIT_EXCEEDED"),
    (500, InternalServerError, "INTERNAL_ERROR"),
    (502, InternalServerError, "BAD_GATEWAY"),
    (503, InternalServerError, "SEARCH_INDEX_UNAVAILABLE"),
    (504, InternalServerError, "GATEWAY_TIMEOUT"),
    (418, APIStatusError, "TEAPOT"),
]


@pytest.mark.parametrize(("status", "cls", "code"), STATUS_CASES)
async def test_status_maps_to_error_class(
    mock: aioresponses, strict: AccountClient, status: int, cls: type[APIStatusError], code: str
) -> None:
    """Each HTTP status raises its own class, carrying status, code, detail and headers."""
    mock.get(
        url(SUB_KEY_PATH),
        status=status,
        payload=error(code, "something went wrong"),
        headers={"X-Request-Id": "req-42"},
    )

    with pytest.raises(APIStatusError) as caught:
        await strict.sub_keys.get(CHILD_ID)

    err = caught.value
    assert type(err) is cls
    assert isinstance(err, CS2CapError)
    assert err.status_code == status
    assert err.code == code
    assert err.detail == "something went wrong"
    assert err.method == "GET"
    assert err.path == SUB_KEY_PATH
    assert err.headers["X-Request-Id"] == "req-42"
    assert f"HTTP {status}" in str(err)
    assert code in str(err)
    assert "something went wrong" in str(err)


@pytest.mark.parametrize(("status", "cls", "_code"), STATUS_CASES)
def test_error_class_for(status: int, cls: type[APIStatusError], _code: str) -> None:
    """`error_class_for` is the single status → class table."""
    assert error_class_for(status) is cls


def test_unlisted_5xx_is_an_internal_server_error() -> None:
    """Any status of 500 or more, even one the table does not name, is an InternalServerError."""
    assert error_class_for(599) is InternalServerError
    assert error_class_for(451) is APIStatusError


async def test_error_headers_are_case_insensitive(
    mock: aioresponses, strict: AccountClient
) -> None:
    """`headers` on an error can be read in any case, as HTTP header names are."""
    mock.get(
        url("/account/key"),
        status=404,
        payload=error("NOT_FOUND", "x"),
        headers={"x-request-id": "r1"},
    )

    with pytest.raises(NotFoundError) as caught:
        await strict.get_key()

    assert caught.value.headers["X-Request-Id"] == "r1"
    assert caught.value.headers.get("x-request-id") == "r1"


async def test_422_detail_is_a_tuple_of_validation_issues(
    mock: aioresponses, strict: AccountClient
) -> None:
    """A 422's structured `detail` list becomes ValidationIssue items, loc/ctx/input kept."""
    detail = [
        {
            "type": "string_too_long",
            "loc": ["body", "name"],
            "msg": "String should have at most 100 characters",
            "input": "x" * 101,
            "ctx": {"max_length": 100},
        },
        {
            "type": "greater_than_equal",
            "loc": ["body", "rate_requests_per_minute_override", 0],
            "msg": "Input should be greater than or equal to 1",
        },
    ]
    mock.post(url("/account/sub-keys"), status=422, payload=error("VALIDATION_ERROR", detail))

    with pytest.raises(UnprocessableEntityError) as caught:
        await strict.sub_keys.create("x" * 101)

    err = caught.value
    assert err.code == "VALIDATION_ERROR"
    assert err.detail == (
        ValidationIssue(
            type="string_too_long",
            loc=("body", "name"),
            msg="String should have at most 100 characters",
            input="x" * 101,
            ctx={"max_length": 100},
        ),
        ValidationIssue(
            type="greater_than_equal",
            loc=("body", "rate_requests_per_minute_override", 0),
            msg="Input should be greater than or equal to 1",
        ),
    )
    assert "body.name: String should have at most 100 characters" in str(err)
    assert "body.rate_requests_per_minute_override.0: Input should be" in str(err)


async def test_422_skips_items_that_are_not_issues(
    mock: aioresponses, strict: AccountClient
) -> None:
    """Items of a 422 `detail` list without the issue shape are dropped, the rest kept."""
    detail = [
        "free text",
        {"type": "missing", "loc": ["body", "name"], "msg": "Field required"},
        {"loc": "body"},
        {"type": "x", "loc": [1.5], "msg": "float in loc"},
        {"type": "x", "loc": ["body"], "msg": "ctx not an object", "ctx": ["max", 1]},
    ]
    mock.post(url("/account/sub-keys"), status=422, payload=error("VALIDATION_ERROR", detail))

    with pytest.raises(UnprocessableEntityError) as caught:
        await strict.sub_keys.create("")

    assert caught.value.detail == (
        ValidationIssue(type="missing", loc=("body", "name"), msg="Field required"),
    )


async def test_422_with_no_usable_issue(mock: aioresponses, strict: AccountClient) -> None:
    """A 422 whose list holds no valid issue still raises, with an empty tuple and a message."""
    mock.post(url("/account/sub-keys"), status=422, payload=error("VALIDATION_ERROR", []))

    with pytest.raises(UnprocessableEntityError) as caught:
        await strict.sub_keys.create("")

    assert caught.value.detail == ()
    assert str(caught.value) == "POST /account/sub-keys failed with HTTP 422 VALIDATION_ERROR"


async def test_429_carries_retry_after_and_rate_limit(
    mock: aioresponses, strict: AccountClient, clock: FakeClock
) -> None:
    """A 429 exposes `retry_after` in seconds and the parsed `X-RateLimit-*` headers."""
    headers = {
        "Retry-After": "7",
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "30",
        "X-RateLimit-Tier": "quant",
    }
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "Too many requests"),
        headers=headers,
    )

    with pytest.raises(RateLimitError) as caught:
        await strict.get_key()

    err = caught.value
    expected = RateLimitInfo(
        limit=300,
        remaining=0,
        reset_at=clock.now() + dt.timedelta(seconds=30),
        tier="quant",
        retry_after=7.0,
    )
    assert err.retry_after == 7.0
    assert err.rate_limit == expected
    assert strict.rate_limit == expected
    assert not err.is_monthly_quota
    assert "retry after 7 s" in str(err)


async def test_429_without_headers(mock: aioresponses, strict: AccountClient) -> None:
    """A 429 without rate-limit headers has no `retry_after` and no `rate_limit`."""
    mock.get(url("/account/key"), status=429, payload=error("RATE_LIMIT_EXCEEDED", "slow down"))

    with pytest.raises(RateLimitError) as caught:
        await strict.get_key()

    assert caught.value.retry_after is None
    assert caught.value.rate_limit is None
    assert "retry after" not in str(caught.value)


async def test_429_reset_as_unix_timestamp(mock: aioresponses, strict: AccountClient) -> None:
    """An `X-RateLimit-Reset` above 1e9 is read as a Unix timestamp."""
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "slow down"),
        headers={"X-RateLimit-Reset": "1772447460"},
    )

    with pytest.raises(RateLimitError) as caught:
        await strict.get_key()

    assert caught.value.rate_limit is not None
    assert caught.value.rate_limit.reset_at == dt.datetime(
        2026, 3, 2, 10, 31, tzinfo=dt.timezone.utc
    )


async def test_monthly_quota_is_not_retried(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A monthly-quota 429 is raised at once, even with retries left, and says when it resets."""
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED", "quota"),
        headers={"Retry-After": "1", "X-RateLimit-Reset": "1772447460"},
        repeat=True,
    )

    with pytest.raises(RateLimitError) as caught:
        await client.get_key()

    assert caught.value.is_monthly_quota
    assert "monthly quota" in str(caught.value)
    assert "2026-03-02T10:31:00+00:00" in str(caught.value)
    assert total_calls(mock) == 1
    assert clock.sleeps == []


async def test_monthly_quota_without_reset_header(
    mock: aioresponses, strict: AccountClient
) -> None:
    """Without a reset time, the monthly-quota message says it resets next billing period."""
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED", "quota"),
    )

    with pytest.raises(RateLimitError) as caught:
        await strict.get_key()

    assert "next billing period" in str(caught.value)


async def test_per_minute_429_is_retried_after_retry_after(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A per-minute 429 is retried, waiting at least the server's Retry-After (virtually)."""
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "slow down"),
        headers={"Retry-After": "12"},
    )
    mock.get(url("/account/key"), payload={"key": key_info()})

    info = await client.get_key()

    assert info.is_active
    assert len(calls(mock, "GET", "/account/key")) == 2
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 12.0


async def test_retry_after_beyond_max_retry_wait_is_raised(
    mock: aioresponses, clock: FakeClock
) -> None:
    """A Retry-After longer than `max_retry_wait` is not waited out: the 429 is raised."""
    mock.get(
        url("/account/key"),
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "slow down"),
        headers={"Retry-After": "600"},
        repeat=True,
    )
    async with AccountClient(
        ROOT_KEY, base_url=BASE_URL, clock=clock, max_retry_wait=60.0
    ) as account:
        with pytest.raises(RateLimitError) as caught:
            await account.get_key()

    assert caught.value.retry_after == 600.0
    assert total_calls(mock) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_idempotent_requests_retry_5xx(
    mock: aioresponses, client: AccountClient, clock: FakeClock, status: int
) -> None:
    """GET, PATCH and DELETE retry a 5xx with backoff and succeed when the server recovers."""
    mock.get(url("/account/key"), status=status, body="upstream down", content_type="text/plain")
    mock.get(url("/account/key"), status=status, payload=error("X", "again"))
    mock.get(url("/account/key"), payload={"key": key_info()})

    info = await client.get_key()

    assert info.is_active
    assert len(clock.sleeps) == 2
    assert 0 < clock.sleeps[0] <= clock.sleeps[1]


async def test_retries_are_bounded(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """With `max_retries=2` a failing GET is sent three times, then its error is raised."""
    mock.get(url("/account/key"), status=503, payload=error("DOWN", "down"), repeat=True)

    with pytest.raises(InternalServerError) as caught:
        await client.get_key()

    assert caught.value.code == "DOWN"
    assert total_calls(mock) == 3
    assert len(clock.sleeps) == 2


async def test_deadline_stops_retries(mock: aioresponses, clock: FakeClock) -> None:
    """No retry starts whose wait would end past `deadline`."""
    mock.get(url("/account/key"), status=503, payload=error("DOWN", "down"), repeat=True)
    async with AccountClient(
        ROOT_KEY, base_url=BASE_URL, clock=clock, max_retries=10, deadline=0.1
    ) as account:
        with pytest.raises(InternalServerError):
            await account.get_key()

    assert total_calls(mock) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_client_errors_are_not_retried(
    mock: aioresponses, client: AccountClient, clock: FakeClock, status: int
) -> None:
    """A 4xx other than 408/429 is raised after one attempt, even with retries left."""
    mock.get(url("/account/key"), status=status, payload=error("NOPE", "no"), repeat=True)

    with pytest.raises(APIStatusError):
        await client.get_key()

    assert total_calls(mock) == 1
    assert clock.sleeps == []


async def test_create_is_not_retried_after_a_5xx(mock: aioresponses, client: AccountClient) -> None:
    """A 5xx to a create may have created a key: SubKeyOutcomeUnknownError, not a retry."""
    mock.post(url("/account/sub-keys"), status=502, body="Bad Gateway", repeat=True)

    with pytest.raises(SubKeyOutcomeUnknownError) as caught:
        await client.sub_keys.create("bot")

    assert isinstance(caught.value.__cause__, InternalServerError)
    assert "'bot'" in str(caught.value)
    assert total_calls(mock) == 1


async def test_sub_key_reissue_is_not_retried_after_a_5xx_that_acted(
    mock: aioresponses, client: AccountClient
) -> None:
    """A child-key reissue answered 503 is not repeated blindly: the old child is probed,
    and, found revoked (the reissue acted), `SubKeyLostError` is raised after one POST.
    """
    mock.get(url(SUB_KEY_PATH), payload=detail())  # read before the reissue
    mock.post(url(SUB_KEY_PATH + "/reissue"), status=503, payload=error("DOWN", "x"), repeat=True)
    mock.get(url(SUB_KEY_PATH), payload=detail(child_info(is_active=False)))  # the probe

    with pytest.raises(SubKeyLostError) as caught:
        await client.sub_keys.reissue(CHILD_ID)

    assert caught.value.previous_key_id == CHILD_ID
    assert caught.value.name == "bot"
    assert len(calls(mock, "POST", SUB_KEY_PATH + "/reissue")) == 1


async def test_post_is_retried_after_a_per_minute_429(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A 429 proves the server did nothing, so even a create is retried after it."""
    mock.post(
        url("/account/sub-keys"),
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "slow"),
        headers={"Retry-After": "2"},
    )
    mock.post(url("/account/sub-keys"), status=201, payload=created())

    made = await client.sub_keys.create("bot")

    assert made.key_info.name == "bot"
    assert total_calls(mock) == 2
    assert clock.sleeps[0] >= 2.0


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (503, b"", "text/plain"),
        (401, b"", "application/json"),
        (404, b"Not Found", "text/plain"),
        (400, b'{"code": "BAD', "application/json"),
        (403, b'["FORBIDDEN"]', "application/json"),
        (409, b'{"code": 409, "detail": {"why": "conflict"}}', "application/json"),
        (418, b"I'm a teapot", "text/plain"),
    ],
)
async def test_error_bodies_that_are_not_the_api_shape(
    mock: aioresponses, strict: AccountClient, status: int, body: bytes, content_type: str
) -> None:
    """Non-JSON, empty or oddly shaped error bodies still map by status, code/detail None."""
    mock.get(url("/account/key"), status=status, body=body, content_type=content_type)

    with pytest.raises(APIStatusError) as caught:
        await strict.get_key()

    err = caught.value
    assert type(err) is error_class_for(status)
    assert err.status_code == status
    assert err.code is None
    assert err.detail is None
    assert str(err) == f"GET /account/key failed with HTTP {status}"


async def test_error_code_without_detail(mock: aioresponses, strict: AccountClient) -> None:
    """A body with a code and no detail gives the code and a None detail."""
    mock.get(url("/account/key"), status=401, payload={"code": "UNAUTHORIZED"})

    with pytest.raises(AuthenticationError) as caught:
        await strict.get_key()

    assert caught.value.code == "UNAUTHORIZED"
    assert caught.value.detail is None
    assert str(caught.value) == "GET /account/key failed with HTTP 401 UNAUTHORIZED"


def test_errors_can_be_built_directly() -> None:
    """The status classes can be raised by user code (e.g. fakes) with just method and path."""
    err = ConflictError(status_code=409, method="POST", path="/account/sub-keys")
    assert err.headers == {}
    assert err.code is None
    assert repr(err) == "ConflictError('POST /account/sub-keys failed with HTTP 409')"
    limited = RateLimitError(method="GET", path="/x", retry_after=1.5)
    assert limited.status_code == 429
    assert "retry after 1.5 s" in str(limited)


def test_error_hierarchy() -> None:
    """The tree drawn in the errors module: what each error can be caught as."""
    status: list[type[CS2CapError]] = [RateLimitError, NotFoundError, InternalServerError]
    connection: list[type[CS2CapError]] = [APITimeoutError]
    # An outcome is unknown after a 5xx or a malformed body too: not a connection error.
    unknown: list[type[CS2CapError]] = [ReissueOutcomeUnknownError, SubKeyOutcomeUnknownError]
    other: list[type[CS2CapError]] = [
        KeyLostError,
        MalformedResponseError,
        RotationError,
        StoreError,
    ]
    assert all(issubclass(cls, APIStatusError) for cls in status)
    assert all(issubclass(cls, APIConnectionError) for cls in connection)
    assert all(issubclass(cls, OutcomeUnknownError) for cls in unknown)
    assert not any(issubclass(cls, APIStatusError | APIConnectionError) for cls in unknown)
    assert not any(
        issubclass(cls, APIStatusError | APIConnectionError | OutcomeUnknownError) for cls in other
    )
    assert issubclass(StaleGenerationError, StoreError)


def test_non_status_errors_keep_their_context() -> None:
    """KeyLost, Rotation and StaleGeneration errors carry the ids/generations they name."""
    lost = KeyLostError("lost", previous_key_id="k1")
    assert (lost.previous_key_id, str(lost)) == ("k1", "lost")
    rotation = RotationError("stuck", previous_key_id="k2")
    assert (rotation.previous_key_id, rotation.message) == ("k2", "stuck")
    assert RotationError("plain").previous_key_id is None
    stale = StaleGenerationError("fenced", expected_generation=3, stored_generation=4)
    assert (stale.expected_generation, stale.stored_generation) == (3, 4)
    assert repr(stale) == "StaleGenerationError('fenced')"


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError(
            method="GET", path="/account/key", code="RATE_LIMIT_EXCEEDED", retry_after=3.0
        ),
        KeyLostError("lost", previous_key_id="k1"),
        StaleGenerationError("stale", expected_generation=1, stored_generation=2),
        APIConnectionError("refused", request_sent=False),
    ],
)
def test_errors_survive_pickling(error: CS2CapError) -> None:
    """Errors cross process boundaries intact (keyword-only constructors notwithstanding)."""
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
