"""After a 401, the session asks the store for the current key once; it never reissues.

Against the fake, in-process: a reissue there revokes the client's key for real, and
`wire.seen` shows the credential each request carried.
"""

from __future__ import annotations

import pytest

from cs2cap_account import AccountClient, APIStatusError, AuthenticationError, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import API_KEY, Recorder, revoke_root_key
from .conftest import MakeClient


def sent_tokens(wire: Recorder) -> list[str | None]:
    """The Authorization header of each GET /account/key, in order."""
    return [seen.authorization for seen in wire.seen if seen.path == "/v1/account/key"]


def with_reload(client: AccountClient, key: SecretKey | None) -> list[int]:
    """Make the client's credential reloadable from a stub store holding `key`."""
    asked: list[int] = []

    async def reload() -> SecretKey | None:
        asked.append(1)
        return key

    client.on_unauthorized(reload)
    return asked


async def test_a_401_reloads_a_newer_key_and_resends_with_it(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient
) -> None:
    """The store has a newer key: the request is sent again with it, once, and the client
    (and its `with_options` copies) keep using it.
    """
    client = make_fake_client()
    old = await revoke_root_key(fake)
    fresh = fake.root_key
    asked = with_reload(client, fresh)

    await client.get_key()
    await client.with_options(timeout=5).get_key()

    assert asked == [1]
    assert client.api_key == fresh
    assert sent_tokens(wire) == [
        f"Bearer {old.reveal()}",
        f"Bearer {fresh.reveal()}",
        f"Bearer {fresh.reveal()}",
    ]


@pytest.mark.parametrize("stored", ["empty", "same-key"])
async def test_a_401_is_raised_when_the_store_has_nothing_newer(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, stored: str
) -> None:
    """No stored key, or the same key: the 401 is raised after one request."""
    client = make_fake_client()
    old = await revoke_root_key(fake)
    with_reload(client, None if stored == "empty" else old)

    with pytest.raises(AuthenticationError):
        await client.get_key()

    assert fake.requests["get_key"] == 1


async def test_the_reload_happens_once_per_request(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """When the reloaded key is refused too, the 401 is raised: no loop."""
    client = make_fake_client()
    await revoke_root_key(fake)
    asked = with_reload(client, SecretKey(API_KEY))  # a key the fake never issued

    with pytest.raises(AuthenticationError):
        await client.get_key()

    assert asked == [1]
    assert fake.requests["get_key"] == 2


async def test_without_a_reload_a_401_is_raised_at_once(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A plain client (no store attached) raises the 401 after one request."""
    client = make_fake_client()
    await revoke_root_key(fake)

    with pytest.raises(AuthenticationError) as caught:
        await client.get_key()

    assert caught.value.code == "AUTH_API_KEY_REVOKED"
    assert fake.requests["get_key"] == 1


async def test_a_request_with_an_explicit_token_never_reloads(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """The reissue probe sends the old key on purpose: its 401 is an answer, not a cue to
    reload (the probe reads it as "the reissue happened").
    """
    client = make_fake_client()
    old = await revoke_root_key(fake)
    asked = with_reload(client, fake.root_key)

    with pytest.raises(AuthenticationError):
        await client._session.request("GET", "/account/key", dict, token=old)

    assert asked == []


async def test_an_explicit_token_with_a_body_sends_that_token_as_json(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient
) -> None:
    """A per-request token replaces the client's credential, with the JSON content type."""
    fake.faults.fail("create_sub_key", status=400, code="BAD_REQUEST")
    client = make_fake_client()
    token = fake.session_token

    with pytest.raises(APIStatusError):
        await client._session.request(
            "POST", "/account/sub-keys", dict, body={"name": "x"}, token=token
        )

    (call,) = wire.seen
    assert call.authorization == f"Bearer {token.reveal()}"
    assert call.content_type == "application/json"
    assert call.body == b'{"name":"x"}'


async def test_an_api_key_wins_over_a_session_token(
    fake: FakeCS2CapAPI, wire: Recorder, make_fake_client: MakeClient
) -> None:
    """Given both, the client sends the API key and keeps the JWT for later."""
    jwt = fake.session_token
    client = make_fake_client(api_key=fake.root_key, session_token=jwt)

    await client.get_key()

    assert sent_tokens(wire) == [f"Bearer {fake.root_key.reveal()}"]
    credentials = client._session.shared.credentials
    assert credentials.session_token == jwt
    assert credentials.current == fake.root_key
