"""Which failures are retried, how often, and with which waits (virtual time).

Statuses, drops and slow answers come from the fake, in-process (`fake.requests` counts
what was sent). aioresponses stays for the failures only aiohttp itself can raise: a
connection reset, a refused or timed-out connect, and a timeout's chained cause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FakeClock,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SubKeyLostError,
    UnprocessableEntityError,
)
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import (
    assert_backoff,
    key_body,
    revoked_body,
    sub_key_detail,
)
from .conftest import MOCK_BASE, MakeClient

KID = "5f0c8f0e-2a41-4d55-9a0e-5a4f3b2c1d0e"
KEY_URL = MOCK_BASE + "/account/key"
SUB_URL = MOCK_BASE + "/account/sub-keys/" + KID
CREATE_URL = MOCK_BASE + "/account/sub-keys"
SUB_REISSUE_URL = SUB_URL + "/reissue"

ALWAYS = 100  # more requests than any test sends

Call = Callable[[AccountClient, str], Awaitable[object]]


def _get(client: AccountClient, key_id: str) -> Awaitable[object]:
    return client.get_key()


def _patch(client: AccountClient, key_id: str) -> Awaitable[object]:
    return client.sub_keys.update(key_id, name="renamed")


def _delete(client: AccountClient, key_id: str) -> Awaitable[object]:
    return client.sub_keys.delete(key_id)


# (method, url, success body, how to call it): for aioresponses, with KID
IDEMPOTENT: list[tuple[str, str, dict[str, Any], Call]] = [
    ("GET", KEY_URL, key_body(), _get),
    ("PATCH", SUB_URL, sub_key_detail(KID), _patch),
    ("DELETE", SUB_URL, revoked_body(KID), _delete),
]
IDEMPOTENT_IDS = ["GET", "PATCH", "DELETE"]
# (the fake's route name, how to call it): against the fake, with one of its child keys
IDEMPOTENT_ROUTES: list[tuple[str, Call]] = [
    ("get_key", _get),
    ("update_sub_key", _patch),
    ("delete_sub_key", _delete),
]

RETRYABLE: list[tuple[int, str | None]] = [
    (408, "REQUEST_TIMEOUT"),
    (429, "RATE_LIMIT_EXCEEDED"),
    (429, None),
    (500, "INTERNAL_SERVER_ERROR"),
    (502, "BAD_GATEWAY"),
    (503, "SERVICE_UNAVAILABLE"),
    (504, "GATEWAY_TIMEOUT"),
]


def calls(mock: aioresponses, method: str, url: str) -> int:
    """How many requests aioresponses received for `method url`."""
    return len((mock.requests or {}).get((method, URL(url)), []))


def _child(fake: FakeCS2CapAPI) -> str:
    return fake.add_child_key("bot").key_id


@pytest.mark.parametrize(("route", "call"), IDEMPOTENT_ROUTES, ids=IDEMPOTENT_IDS)
@pytest.mark.parametrize(("status", "code"), RETRYABLE)
async def test_each_retryable_status_is_retried_with_backoff(
    fake: FakeCS2CapAPI,
    make_fake_client: MakeClient,
    clock: FakeClock,
    route: str,
    call: Call,
    status: int,
    code: str | None,
) -> None:
    """Each retryable status is retried with exponential backoff and jitter.

    408, per-minute 429, 500, 502, 503 and 504 on GET/PATCH/DELETE are retried twice,
    waiting 0.5-1 s then 1-1.5 s, then succeed.
    """
    fake.faults.fail(route, status=status, code=code, detail="transient", times=2)
    client = make_fake_client()

    await call(client, _child(fake))

    assert fake.requests[route] == 3
    assert len(clock.sleeps) == 2
    assert_backoff(clock.sleeps)


@pytest.mark.parametrize(("method", "url", "ok", "call"), IDEMPOTENT, ids=IDEMPOTENT_IDS)
@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        asyncio.TimeoutError(),
        aiohttp.ConnectionTimeoutError("connect timed out"),
    ],
    ids=["disconnected", "reset", "timeout", "connect-timeout"],
)
async def test_connection_errors_and_timeouts_are_retried_for_idempotent_requests(
    mocked: aioresponses,
    make_client: MakeClient,
    clock: FakeClock,
    method: str,
    url: str,
    ok: dict[str, Any],
    call: Call,
    exception: Exception,
) -> None:
    """A dropped connection, a reset or a timeout on GET/PATCH/DELETE is retried."""
    # aioresponses: aiohttp's own exceptions, once each (over a socket, aiohttp resends a
    # dropped GET or DELETE by itself, and the fake cannot reset or time out a connect).
    mocked.add(url, method, exception=exception)
    mocked.add(url, method, payload=ok)

    await call(make_client(), KID)

    assert calls(mocked, method, url) == 2
    assert len(clock.sleeps) == 1
    assert_backoff(clock.sleeps)


async def test_retries_stop_after_max_retries_and_raise_the_last_error(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """Retries stop after `max_retries` and the last error is raised.

    With the default `max_retries=2`, a GET that keeps failing is sent 3 times.
    """
    fake.faults.fail("get_key", status=503, code="SERVICE_UNAVAILABLE", times=ALWAYS)

    with pytest.raises(InternalServerError) as caught:
        await make_fake_client().get_key()

    assert caught.value.status_code == 503
    assert caught.value.code == "SERVICE_UNAVAILABLE"
    assert fake.requests["get_key"] == 3
    assert len(clock.sleeps) == 2
    assert_backoff(clock.sleeps)


async def test_backoff_grows_exponentially_and_is_capped_at_8_seconds(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """Seven retries wait ~0.5, 1, 2, 4, then ~8, ~8, ~8 s: doubling, never above 8 s."""
    fake.faults.fail("get_key", status=500, times=ALWAYS)

    with pytest.raises(InternalServerError):
        await make_fake_client(max_retries=7).get_key()

    assert fake.requests["get_key"] == 8
    assert len(clock.sleeps) == 7
    assert_backoff(clock.sleeps)
    assert all(7.5 <= slept <= 8.0 for slept in clock.sleeps[4:])


async def test_backoff_has_jitter(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """The first wait is not a constant 0.5 s: jitter spreads clients out."""
    client = make_fake_client()
    for _ in range(20):
        fake.faults.fail("get_key", status=503)
        await client.get_key()

    assert len(clock.sleeps) == 20
    assert all(0.5 <= slept <= 1.0 for slept in clock.sleeps)  # each is a first retry
    assert len(set(clock.sleeps)) > 1


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "BAD_REQUEST", BadRequestError),
        (401, "AUTH_INVALID_API_KEY", AuthenticationError),
        (403, "FORBIDDEN", PermissionDeniedError),
        (404, "NOT_FOUND", NotFoundError),
        (409, "CONFLICT", ConflictError),
        (422, "VALIDATION_ERROR", UnprocessableEntityError),
        (429, "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED", RateLimitError),
        (429, "RATE_LIMIT_STREAM_QUOTA_EXCEEDED", RateLimitError),
        (501, "NOT_IMPLEMENTED", InternalServerError),
        (505, None, InternalServerError),
        (418, None, APIStatusError),
    ],
)
@pytest.mark.parametrize(("route", "call"), IDEMPOTENT_ROUTES, ids=IDEMPOTENT_IDS)
async def test_non_retryable_statuses_are_raised_at_once(
    fake: FakeCS2CapAPI,
    make_fake_client: MakeClient,
    clock: FakeClock,
    status: int,
    code: str | None,
    error: type[APIStatusError],
    route: str,
    call: Call,
) -> None:
    """Client errors, the monthly quota and 5xx outside 500/502/503/504 are sent once."""
    fake.faults.fail(route, status=status, code=code, detail="transient", times=ALWAYS)

    with pytest.raises(error) as caught:
        await call(make_fake_client(), _child(fake))

    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert fake.requests[route] == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "code"),
    [(408, None), (500, None), (502, None), (503, "SERVICE_UNAVAILABLE"), (504, None)],
)
async def test_a_post_is_not_retried_after_a_5xx_or_408(
    fake: FakeCS2CapAPI,
    make_fake_client: MakeClient,
    clock: FakeClock,
    status: int,
    code: str | None,
) -> None:
    """A POST the server may have acted on (5xx, 408) is never repeated blindly: a child
    reissue is sent again only after a probe of the old child found it still active
    (the fault kept the handler from running), each time; then the last status is raised.
    """
    fake.faults.fail("reissue_sub_key", status=status, code=code, detail="x", times=ALWAYS)

    with pytest.raises(APIStatusError) as caught:
        await make_fake_client().sub_keys.reissue(_child(fake))

    assert caught.value.status_code == status
    sent = fake.requests["reissue_sub_key"]
    assert sent == 3  # the first try and max_retries (2) more, each after a probe
    assert fake.requests["get_sub_key"] == 1 + sent  # read first, then a probe per failure
    assert len(clock.sleeps) == sent - 1


async def test_a_post_is_not_retried_after_a_failure_once_sent(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A child reissue that timed out once sent, and took effect meanwhile (the fake ran
    it late), is not repeated: the probe finds the old child revoked, `SubKeyLostError`.
    """
    fake.faults.delay("reissue_sub_key", 100.0, times=ALWAYS)  # past the 30 s timeout
    # The fake waits on a clock of its own, so `clock.sleeps` holds only the client's waits.
    client = make_fake_client(transport=fake.transport(clock=FakeClock()))

    with pytest.raises(SubKeyLostError) as caught:
        await client.sub_keys.reissue(_child(fake))

    timed_out = caught.value.__cause__
    assert isinstance(timed_out, APIConnectionError)
    assert timed_out.request_sent is True
    assert fake.requests["reissue_sub_key"] == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("api.test", 443, True, True, None, None, None),
            ConnectionRefusedError(111, "Connection refused"),
        ),
        aiohttp.ConnectionTimeoutError("connect timed out"),
    ],
    ids=["refused", "connect-timeout"],
)
async def test_a_post_is_retried_when_the_connection_was_never_made(
    mocked: aioresponses, make_client: MakeClient, clock: FakeClock, exception: Exception
) -> None:
    """Refused or timed-out connects prove the server never saw the POST: it is retried."""
    # aioresponses: the fake always accepts the connection.
    mocked.get(SUB_URL, payload=sub_key_detail(KID))  # the old child, read first
    mocked.post(SUB_REISSUE_URL, exception=exception)
    mocked.post(SUB_REISSUE_URL, status=200, payload=_created(KID))

    made = await make_client().sub_keys.reissue(KID)

    assert made.key_info.id == KID
    assert calls(mocked, "POST", SUB_REISSUE_URL) == 2
    assert len(clock.sleeps) == 1
    assert_backoff(clock.sleeps)


async def test_a_post_is_retried_after_a_per_minute_429(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A per-minute 429 proves the server did not act: the POST is sent again."""
    fake.faults.fail("reissue_sub_key", status=429, code="RATE_LIMIT_EXCEEDED")

    await make_fake_client().sub_keys.reissue(_child(fake))

    assert fake.requests["reissue_sub_key"] == 2
    assert len(clock.sleeps) == 1


async def test_max_retries_zero_disables_retries(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`max_retries=0` sends each request exactly once."""
    fake.faults.fail("get_key", status=503, times=ALWAYS)

    with pytest.raises(InternalServerError):
        await make_fake_client(max_retries=0).get_key()

    assert fake.requests["get_key"] == 1
    assert clock.sleeps == []


async def test_with_options_overrides_max_retries_per_call(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """`with_options(max_retries=...)` overrides the retry count per call.

    Calls through the copy use its count; the original client keeps its own setting.
    """
    fake.faults.fail("get_key", status=503, times=ALWAYS)
    client = make_fake_client(max_retries=1)

    with pytest.raises(InternalServerError):
        await client.with_options(max_retries=0).get_key()
    assert fake.requests["get_key"] == 1

    with pytest.raises(InternalServerError):
        await client.with_options(max_retries=4).get_key()
    assert fake.requests["get_key"] == 1 + 5

    with pytest.raises(InternalServerError):
        await client.get_key()
    assert fake.requests["get_key"] == 1 + 5 + 2
    assert len(clock.sleeps) == 4 + 1


@pytest.mark.parametrize(
    "bad",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"max_retries": -1},
        {"deadline": 0},
        {"max_retry_wait": -1},
    ],
)
async def test_invalid_options_are_refused(make_client: MakeClient, bad: dict[str, Any]) -> None:
    """Nonsense settings fail at construction, on the client and on `with_options`."""
    with pytest.raises(ValueError, match="must be"):
        make_client(**bad)
    with pytest.raises(ValueError, match="must be"):
        make_client().with_options(**bad)


async def test_a_timeout_error_is_an_api_timeout_error_with_its_cause(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """When every attempt times out, `APITimeoutError` is raised.

    It is chained to the underlying timeout.
    """
    # aioresponses: the chained cause is aiohttp's own timeout exception.
    mocked.get(KEY_URL, exception=asyncio.TimeoutError(), repeat=True)

    with pytest.raises(APITimeoutError) as caught:
        await make_client(max_retries=1).get_key()

    assert isinstance(caught.value.__cause__, asyncio.TimeoutError)
    assert calls(mocked, "GET", KEY_URL) == 2


def _created(key_id: str) -> dict[str, Any]:
    info = sub_key_detail(key_id)["key"]
    return {"key": "sk_live_child_Zr8Kq2Wd5Nf7Hx3Lp9Tm4Vb", "key_info": info, "message": "ok"}
