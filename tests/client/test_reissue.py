"""Root-key reissue: never blindly repeated; a lost response is proven, not guessed.

The verdict itself (probe answer x credential kind) is a pure function, tested by its
table in test_reissue_verdict.py; these tests drive `reissue_key()` through answers the
fake API cannot give (aioresponses) to check the wiring around it: what is probed, with
which credential, how often the POST goes out, and what is raised and chained.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FakeClock,
    InternalServerError,
    KeyLostError,
    PermissionDeniedError,
    RateLimitError,
    ReissueOutcomeUnknownError,
    SecretKey,
)

from ._payloads import (
    BASE_URL,
    NEW_ROOT_ID,
    NEW_ROOT_KEY,
    ROOT_ID,
    ROOT_KEY,
    SESSION_JWT,
    calls,
    error,
    key_info,
    refused,
    reissued,
    sent_headers,
    url,
)

KEY = url("/account/key")
REISSUE = url("/account/key/reissue")
LOST_ID = "9d8c7b6a-5f4e-4d3c-8b2a-190817161514"


def posts(mock: aioresponses) -> int:
    """How many reissue POSTs were sent."""
    return len(calls(mock, "POST", "/account/key/reissue"))


def gets(mock: aioresponses) -> list[str]:
    """The bearer token of every `GET /account/key`, in order."""
    return [
        sent_headers(call)["Authorization"].removeprefix("Bearer ")
        for call in calls(mock, "GET", "/account/key")
    ]


async def test_probe_then_post_in_that_order(mock: aioresponses, client: AccountClient) -> None:
    """The active key is read before the POST, both with the current key."""
    order: list[str] = []

    def record(method: str) -> Any:
        def callback(_url: Any, **_kwargs: Any) -> None:
            order.append(method)

        return callback

    mock.get(KEY, payload={"key": key_info()}, callback=record("GET"))
    mock.post(REISSUE, payload=reissued(), callback=record("POST"))

    await client.reissue_key()

    assert order == ["GET", "POST"]
    assert gets(mock) == [ROOT_KEY]


async def test_lost_response_with_key_still_valid_is_retried(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A 503 to the POST, then a probe showing the old key active: the POST is sent again."""
    mock.get(KEY, payload={"key": key_info()}, repeat=2)
    mock.post(REISSUE, status=503, payload=error("DOWN", "x"))
    mock.post(REISSUE, payload=reissued())

    new = await client.reissue_key()

    assert new.key == SecretKey(NEW_ROOT_KEY)
    assert posts(mock) == 2
    assert gets(mock) == [ROOT_KEY, ROOT_KEY]
    assert len(clock.sleeps) == 1
    assert client.api_key == SecretKey(NEW_ROOT_KEY)


async def test_proven_not_applied_but_no_retries_left(mock: aioresponses, clock: FakeClock) -> None:
    """With `max_retries=0`, a reissue proven not to have happened raises its 5xx, once."""
    mock.get(KEY, payload={"key": key_info()}, repeat=2)
    mock.post(REISSUE, status=500, payload=error("BOOM", "x"), repeat=True)
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock, max_retries=0) as client:
        with pytest.raises(InternalServerError):
            await client.reissue_key()
        assert client.api_key == SecretKey(ROOT_KEY)

    assert posts(mock) == 1
    assert len(gets(mock)) == 2


@pytest.mark.parametrize("code", ["AUTH_API_KEY_REVOKED", "AUTH_INVALID_API_KEY", None])
async def test_lost_response_with_key_revoked_is_key_lost(
    mock: aioresponses, client: AccountClient, code: str | None
) -> None:
    """Dropped mid-response, then the old key answers 401 revoked: KeyLostError, no retry."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    mock.get(KEY, status=401, payload=error(code, "API key revoked"))

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    err = caught.value
    assert err.previous_key_id == ROOT_ID
    assert "session JWT" in str(err)
    assert isinstance(err.__cause__, Exception)
    assert isinstance(err.__cause__.__cause__, aiohttp.ServerDisconnectedError)
    assert posts(mock) == 1
    assert client.api_key == SecretKey(ROOT_KEY)


async def test_probe_401_for_another_reason_is_unknown(
    mock: aioresponses, client: AccountClient
) -> None:
    """A 401 that does not say 'revoked' (a disabled account) proves nothing: outcome unknown."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, status=502, body=b"<html>Bad Gateway</html>", content_type="text/html")
    mock.get(KEY, status=401, payload=error("AUTH_ACCOUNT_DISABLED", "disabled"))

    with pytest.raises(ReissueOutcomeUnknownError) as caught:
        await client.reissue_key()

    assert isinstance(caught.value.__cause__, InternalServerError)
    assert ROOT_ID in str(caught.value)
    assert "AUTH_ACCOUNT_DISABLED" in str(caught.value)
    assert posts(mock) == 1


async def test_probe_that_fails_is_unknown(mock: aioresponses, clock: FakeClock) -> None:
    """When the probe itself keeps failing, the outcome is unknown and nothing is repeated."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=aiohttp.ServerDisconnectedError())
    mock.get(KEY, status=503, payload=error("DOWN", "x"), repeat=True)
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock, max_retries=1) as client:
        with pytest.raises(ReissueOutcomeUnknownError) as caught:
            await client.reissue_key()

    assert "get_key()" in str(caught.value)
    assert posts(mock) == 1


async def test_probe_seeing_another_key_is_unknown(
    mock: aioresponses, client: AccountClient
) -> None:
    """With an API key, a probe naming a different key cannot be explained: outcome unknown."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, status=500, payload=error("X", "x"))
    mock.get(KEY, payload={"key": key_info(id=LOST_ID)})

    with pytest.raises(ReissueOutcomeUnknownError):
        await client.reissue_key()
    assert posts(mock) == 1


async def test_probe_seeing_the_key_inactive_is_unknown(
    mock: aioresponses, client: AccountClient
) -> None:
    """A probe that finds the same key but inactive does not allow a second POST."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, status=500, payload=error("X", "x"))
    mock.get(KEY, payload={"key": key_info(is_active=False)})

    with pytest.raises(ReissueOutcomeUnknownError):
        await client.reissue_key()
    assert posts(mock) == 1


async def test_malformed_reissue_answer_is_ambiguous(
    mock: aioresponses, client: AccountClient
) -> None:
    """A 200 whose body cannot be read may still have reissued: it is probed like a 5xx."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, body=b"<html>oops</html>", content_type="text/html")
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))

    with pytest.raises(KeyLostError):
        await client.reissue_key()


async def test_post_never_sent_is_retried_without_probe(
    mock: aioresponses, client: AccountClient
) -> None:
    """A connection that never opened did nothing: the POST is retried, no probe needed."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=refused())
    mock.post(REISSUE, payload=reissued())

    await client.reissue_key()

    assert posts(mock) == 2
    assert len(gets(mock)) == 1


async def test_rate_limited_post_is_retried_without_probe(
    mock: aioresponses, client: AccountClient, clock: FakeClock
) -> None:
    """A per-minute 429 proves nothing happened: retried after Retry-After, no probe."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(
        REISSUE,
        status=429,
        payload=error("RATE_LIMIT_EXCEEDED", "slow"),
        headers={"Retry-After": "3"},
    )
    mock.post(REISSUE, payload=reissued())

    await client.reissue_key()

    assert posts(mock) == 2
    assert len(gets(mock)) == 1
    assert clock.sleeps[0] >= 3.0


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (403, "FORBIDDEN", PermissionDeniedError),
        (401, "AUTH_API_KEY_REVOKED", AuthenticationError),
        (429, "RATE_LIMIT_MONTHLY_QUOTA_EXCEEDED", RateLimitError),
    ],
)
async def test_definite_refusals_are_raised_as_is(
    mock: aioresponses, client: AccountClient, status: int, code: str, cls: type[Exception]
) -> None:
    """A clear refusal (child key, unverified email, revoked) raises at once, with no probe."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, status=status, payload=error(code, "no"), repeat=True)

    with pytest.raises(cls):
        await client.reissue_key()

    assert posts(mock) == 1
    assert len(gets(mock)) == 1


async def test_reissue_with_session_jwt(mock: aioresponses, clock: FakeClock) -> None:
    """With a session JWT the probe and POST use the JWT; afterwards the new key is sent."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, payload=reissued())
    mock.get(KEY, payload={"key": key_info(id=NEW_ROOT_ID)})
    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as client:
        await client.reissue_key()
        await client.get_key()

    assert gets(mock) == [SESSION_JWT, NEW_ROOT_KEY]
    post = calls(mock, "POST", "/account/key/reissue")[0]
    assert sent_headers(post)["Authorization"] == f"Bearer {SESSION_JWT}"


async def test_jwt_reissues_again_after_a_lost_response(
    mock: aioresponses, clock: FakeClock
) -> None:
    """With a JWT, a lost reissue is seen as a new active root key, and reissued again."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=aiohttp.ServerDisconnectedError())
    mock.get(KEY, payload={"key": key_info(id=LOST_ID)})
    mock.post(REISSUE, payload=reissued())
    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as client:
        new = await client.reissue_key()

    assert new.id == NEW_ROOT_ID
    assert posts(mock) == 2
    assert gets(mock) == [SESSION_JWT, SESSION_JWT]


async def test_jwt_probe_401_is_unknown_not_lost(mock: aioresponses, clock: FakeClock) -> None:
    """A JWT that stops working says nothing about the root key: outcome unknown."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, status=500, payload=error("X", "x"))
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "expired"))
    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as client:
        with pytest.raises(ReissueOutcomeUnknownError):
            await client.reissue_key()


async def test_first_probe_failure_sends_no_post(mock: aioresponses, client: AccountClient) -> None:
    """If the active key cannot be read first, no reissue is attempted."""
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))

    with pytest.raises(AuthenticationError):
        await client.reissue_key()
    assert posts(mock) == 0


async def test_a_timed_out_reissue_whose_old_key_is_revoked_raises_key_lost(
    mock: aioresponses, client: AccountClient
) -> None:
    """A timeout after sending triggers the probe; `401 AUTH_API_KEY_REVOKED` means the
    reissue happened, so `KeyLostError` with the old key's id.
    """
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=asyncio.TimeoutError())
    mock.get(KEY, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    assert caught.value.previous_key_id == ROOT_ID
    assert posts(mock) == 1


async def test_a_session_jwt_compares_against_the_latest_lost_key(
    mock: aioresponses, clock: FakeClock
) -> None:
    """Two lost responses in a row with a session JWT.

    The first probe sees a new id (lost key), the second probe sees that same id (the
    second POST did nothing): both are safe to retry, and the third POST succeeds.
    """
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, exception=aiohttp.ServerDisconnectedError())
    mock.get(KEY, payload={"key": key_info(id=LOST_ID)})
    mock.post(REISSUE, status=502)
    mock.get(KEY, payload={"key": key_info(id=LOST_ID)})
    mock.post(REISSUE, payload=reissued())
    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as client:
        new = await client.reissue_key()
        assert client.api_key == new.key

    assert new.id == NEW_ROOT_ID
    assert posts(mock) == 3
    assert len(clock.sleeps) == 2


async def test_use_new_key_false_keeps_the_old_credential(
    mock: aioresponses, client: AccountClient
) -> None:
    """`reissue_key(use_new_key=False)` returns the key without switching to it."""
    mock.get(KEY, payload={"key": key_info()})
    mock.post(REISSUE, payload=reissued())

    new = await client.reissue_key(use_new_key=False)

    assert client.api_key == SecretKey(ROOT_KEY)
    assert new.key == SecretKey(NEW_ROOT_KEY)


async def test_a_retry_finding_the_key_revoked_means_the_first_attempt_landed_late(
    mock: aioresponses, client: AccountClient
) -> None:
    """The probe saw the old key active, but the retried POST is refused as revoked: the
    timed-out first POST completed at the server after the probe. Its key is lost, which
    is `KeyLostError` (recoverable with a session JWT), not a bare 401.
    """
    mock.get(KEY, payload={"key": key_info()}, repeat=2)
    mock.post(REISSUE, exception=asyncio.TimeoutError())
    mock.post(REISSUE, status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    assert caught.value.previous_key_id == ROOT_ID
    assert isinstance(caught.value.__cause__, AuthenticationError)
    assert posts(mock) == 2


async def test_a_late_refusal_for_another_reason_is_raised_as_is(
    mock: aioresponses, client: AccountClient
) -> None:
    """After a clean probe, a retry refused with a 401 that does not say revoked is not
    read as a late landing: that 401 is raised as it is.
    """
    mock.get(KEY, payload={"key": key_info()}, repeat=2)
    mock.post(REISSUE, exception=aiohttp.ServerDisconnectedError())
    mock.post(REISSUE, status=401, payload=error("AUTH_ACCOUNT_DISABLED", "disabled"))

    with pytest.raises(AuthenticationError) as caught:
        await client.reissue_key()

    assert caught.value.code == "AUTH_ACCOUNT_DISABLED"
    assert caught.value.__cause__ is None
    assert posts(mock) == 2
