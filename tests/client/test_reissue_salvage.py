"""The once-shown reissue answer: the key and its id are kept whatever else is odd."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock, KeyLostError, SecretKey

from ._payloads import NEW_ROOT_ID, NEW_ROOT_KEY, calls, error, key_info, reissued, url

CREATED = dt.datetime(2026, 3, 6, 12, 0, 0, tzinfo=dt.timezone.utc)  # as in reissued()


@pytest.mark.parametrize(
    ("change", "unreadable", "created_at"),
    [
        ({"message": None}, "message", CREATED),
        ({"key_prefix": None}, "key_prefix", CREATED),
        ({"created_at": "Fri, 06 Mar 2026 12:00:00 GMT"}, None, CREATED),
        ({"created_at": 1772798400}, None, CREATED),
        ({"created_at": 1772798400000}, None, CREATED),
        ({"created_at": 1772798400.0}, None, CREATED),
        ({"created_at": "yesterday"}, "created_at", None),
        ({"created_at": float("nan")}, "created_at", None),
        ({"created_at": True}, "created_at", None),
        ({"message": 7, "key_prefix": ["x"]}, "key_prefix, message", CREATED),
    ],
    ids=repr,
)
async def test_an_odd_answer_keeps_the_key(
    mock: aioresponses,
    client: AccountClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    change: dict[str, Any],
    unreadable: str | None,
    created_at: dt.datetime | None,
) -> None:
    """Nulls, other time formats and wrong types around the key: the key is kept, no
    probe, one POST; what could not be read is filled in and named in a warning.
    """
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload={**reissued(), **change})

    with caplog.at_level(logging.WARNING, logger="cs2cap_account"):
        new = await client.reissue_key()

    assert new.key == SecretKey(NEW_ROOT_KEY)
    assert new.id == NEW_ROOT_ID
    assert client.api_key == SecretKey(NEW_ROOT_KEY)
    assert new.created_at == (created_at or clock.now())
    assert new.created_at.tzinfo is not None
    assert new.key_prefix and NEW_ROOT_KEY.startswith(new.key_prefix)
    assert len(calls(mock, "GET", "/account/key")) == 1  # no probe
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if unreadable is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert unreadable in warnings[0]
        assert NEW_ROOT_KEY not in warnings[0]


@pytest.mark.parametrize("envelope", ["data", "result", "key"])
async def test_an_answer_in_an_envelope_keeps_the_key(
    mock: aioresponses, client: AccountClient, envelope: str
) -> None:
    """`{"data": {...the answer...}}` and the like: the answer one level down is read."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload={envelope: reissued(), "ok": True})

    new = await client.reissue_key()

    assert (new.key, new.id) == (SecretKey(NEW_ROOT_KEY), NEW_ROOT_ID)
    assert new.message == reissued()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in reissued().items() if k != "key"},
        {k: v for k, v in reissued().items() if k != "id"},
        {**reissued(), "key": ""},
        {**reissued(), "id": 42},
        [reissued()],
    ],
    ids=["no key", "no id", "empty key", "numeric id", "an array"],
)
async def test_an_answer_without_key_and_id_is_probed(
    mock: aioresponses, client: AccountClient, body: Any
) -> None:
    """Without both the key and its id nothing can be salvaged: the answer is ambiguous,
    the old key is probed, and a revoked one means the key was lost.
    """
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=body)
    mock.get(url("/account/key"), status=401, payload=error("AUTH_API_KEY_REVOKED", "gone"))

    with pytest.raises(KeyLostError):
        await client.reissue_key()

    assert len(calls(mock, "POST", "/account/key/reissue")) == 1
