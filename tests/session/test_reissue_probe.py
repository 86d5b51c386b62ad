"""The reissue probe's verdicts for answers the fake does not give (aioresponses)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aioresponses import aioresponses

from cs2cap_account import (
    FakeClock,
    KeyLostError,
    ReissueOutcomeUnknownError,
)

from ._support import ROOT_ID, error_body, key_body, key_info
from .conftest import MOCK_BASE, MakeClient
from .test_retry_policy import KEY_URL, calls

REISSUE_URL = MOCK_BASE + "/account/key/reissue"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY2NvdW50In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
NEW_ID = "7e57a11d-0000-4000-8000-00000000a11d"
LOST_ID = "10570000-0000-4000-8000-000000001057"


def reissued(key_id: str = NEW_ID) -> dict[str, object]:
    """A successful reissue body."""
    return {
        "key": "sk_live_root_N3wK3yN3wK3yN3wK3yN3wK",
        "key_prefix": "sk_live_root",
        "id": key_id,
        "created_at": "2026-01-01T00:00:01Z",
        "message": "store it",
    }


async def test_a_timed_out_reissue_whose_old_key_is_revoked_raises_key_lost(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """A timeout after sending triggers the probe; `401 AUTH_API_KEY_REVOKED` means the
    reissue happened, so `KeyLostError` with the old key's id.
    """
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, exception=asyncio.TimeoutError())
    mocked.get(KEY_URL, status=401, payload=error_body("AUTH_API_KEY_REVOKED"))

    with pytest.raises(KeyLostError) as caught:
        await make_client().reissue_key()

    assert caught.value.previous_key_id == ROOT_ID
    assert calls(mocked, "POST", REISSUE_URL) == 1


async def test_a_probe_401_for_another_reason_is_outcome_unknown(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """`401 AUTH_ACCOUNT_DISABLED` does not prove the key was reissued: outcome unknown."""
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, status=500)
    mocked.get(KEY_URL, status=401, payload=error_body("AUTH_ACCOUNT_DISABLED"))

    with pytest.raises(ReissueOutcomeUnknownError) as caught:
        await make_client().reissue_key()

    assert ROOT_ID in str(caught.value)
    assert calls(mocked, "POST", REISSUE_URL) == 1


async def test_a_probe_finding_the_key_inactive_is_outcome_unknown(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """A 200 saying the old key is no longer active, without a revocation 401, cannot be
    read either way: outcome unknown, no second POST.
    """
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(KEY_URL, payload={"key": key_info(is_active=False)})

    with pytest.raises(ReissueOutcomeUnknownError):
        await make_client().reissue_key()

    assert calls(mocked, "POST", REISSUE_URL) == 1


async def test_a_session_jwt_rejected_by_the_probe_is_outcome_unknown(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """With a session JWT, a 401 on the probe (say the JWT expired) proves nothing about
    the root key: outcome unknown, not `KeyLostError`.
    """
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(KEY_URL, status=401, payload=error_body("AUTH_API_KEY_REVOKED"))

    with pytest.raises(ReissueOutcomeUnknownError):
        await make_client(session_token=JWT).reissue_key()

    assert calls(mocked, "POST", REISSUE_URL) == 1


async def test_a_session_jwt_compares_against_the_latest_lost_key(
    mocked: aioresponses, make_client: MakeClient, clock: FakeClock
) -> None:
    """Two lost responses in a row with a session JWT.

    The first probe sees a new id (lost key), the second probe sees that same id (the
    second POST did nothing): both are safe to retry, and the third POST succeeds.
    """
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, exception=aiohttp.ServerDisconnectedError())
    mocked.get(KEY_URL, payload=key_body(key_id=LOST_ID))
    mocked.post(REISSUE_URL, status=502)
    mocked.get(KEY_URL, payload=key_body(key_id=LOST_ID))
    mocked.post(REISSUE_URL, payload=reissued())
    client = make_client(session_token=JWT)

    new = await client.reissue_key()

    assert new.id == NEW_ID
    assert calls(mocked, "POST", REISSUE_URL) == 3
    assert client.api_key == new.key
    assert len(clock.sleeps) == 2


async def test_use_new_key_false_keeps_the_old_credential(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """`reissue_key(use_new_key=False)` returns the key without switching to it."""
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, payload=reissued())
    client = make_client()
    old = client.api_key

    new = await client.reissue_key(use_new_key=False)

    assert client.api_key == old
    assert new.key != old


async def test_a_retry_finding_the_key_revoked_means_the_first_attempt_landed_late(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """The probe saw the old key active, but the retried POST is refused as revoked: the
    timed-out first POST completed at the server after the probe. Its key is lost, which
    is `KeyLostError` (recoverable with a session JWT), not a bare 401.
    """
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, exception=asyncio.TimeoutError())
    mocked.get(KEY_URL, payload=key_body())
    mocked.post(REISSUE_URL, status=401, payload=error_body("AUTH_API_KEY_REVOKED"))

    with pytest.raises(KeyLostError) as caught:
        await make_client().reissue_key()

    assert caught.value.previous_key_id == ROOT_ID
    assert calls(mocked, "POST", REISSUE_URL) == 2
