"""Copies of a client: `with_options` (other settings) and `with_credential` (another key)."""

from __future__ import annotations

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock, Hooks, RequestEvent, SecretKey

from ._payloads import BASE_URL, NEW_ROOT_KEY, ROOT_KEY, SESSION_JWT, calls, key_info, sent_headers

KEY_PATH = "/account/key"


def bearers(mock: aioresponses) -> list[str]:
    """The bearer token of every `GET /account/key`, in order."""
    return [
        sent_headers(call)["Authorization"].removeprefix("Bearer ")
        for call in calls(mock, "GET", KEY_PATH)
    ]


def test_with_options_keeps_what_is_omitted() -> None:
    """Only the settings passed change; the others are the original's."""
    client = AccountClient(ROOT_KEY, timeout=7.0, max_retries=4, deadline=60.0)
    copy = client.with_options(max_retries=0)
    options = copy._session.options
    assert (options.timeout, options.max_retries, options.deadline) == (7.0, 0, 60.0)


def test_with_options_deadline_none_removes_the_deadline() -> None:
    """`deadline=None` is a value, not "unchanged": the copy has no deadline."""
    client = AccountClient(ROOT_KEY, deadline=60.0)
    assert client.with_options(deadline=None)._session.options.deadline is None
    assert client.with_options()._session.options.deadline == 60.0
    assert client._session.options.deadline == 60.0  # the original is untouched


def test_with_credential_needs_exactly_one_credential() -> None:
    """Neither, or both, is a `ValueError`."""
    client = AccountClient(ROOT_KEY)
    with pytest.raises(ValueError, match="exactly one"):
        client.with_credential()
    with pytest.raises(ValueError, match="exactly one"):
        client.with_credential(ROOT_KEY, session_token=SESSION_JWT)


async def test_with_credential_sends_its_own_credential_and_shares_the_rest(
    mock: aioresponses, clock: FakeClock
) -> None:
    """The copy sends the JWT through the same hooks, clock and settings; the original
    keeps sending its key, and closing the copy leaves the original open.
    """
    mock.get(BASE_URL + KEY_PATH, payload={"key": key_info()}, repeat=True)
    seen: list[RequestEvent] = []
    async with AccountClient(
        ROOT_KEY,
        base_url=BASE_URL,
        clock=clock,
        max_retries=0,
        hooks=Hooks(on_request=[seen.append]),
    ) as client:
        copy = client.with_credential(session_token=SESSION_JWT)
        await copy.get_key()
        await client.get_key()
        await copy.aclose()
        assert not client.closed
        await client.get_key()

        assert copy.clock is client.clock
        assert copy.base_url == client.base_url
        assert copy._session.options == client._session.options
        assert copy.api_key is None

    assert bearers(mock) == [SESSION_JWT, ROOT_KEY, ROOT_KEY]
    assert len(seen) == 3  # the copy's request went through the original's hooks


async def test_a_reissue_through_the_copy_switches_only_the_copy(
    mock: aioresponses, clock: FakeClock
) -> None:
    """A key reissued with the JWT copy is sent by the copy; the original is unchanged."""
    mock.get(BASE_URL + KEY_PATH, payload={"key": key_info()}, repeat=True)
    mock.post(
        BASE_URL + "/account/key/reissue",
        payload={
            "key": NEW_ROOT_KEY,
            "key_prefix": "sk_live_root",
            "id": "3f2e1d0c-0000-4000-8000-000000000001",
            "created_at": "2026-01-01T00:00:00Z",
            "message": "store it",
        },
    )
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock) as client:
        copy = client.with_credential(session_token=SESSION_JWT)
        await copy.reissue_key()
        assert copy.api_key == SecretKey(NEW_ROOT_KEY)
        assert client.api_key == SecretKey(ROOT_KEY)
