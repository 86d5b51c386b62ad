"""After a 401, the session asks the store for the current key once; it never reissues."""

from __future__ import annotations

import pytest
from aioresponses import aioresponses
from yarl import URL

from cs2cap_account import AccountClient, APIStatusError, AuthenticationError, SecretKey

from ._support import API_KEY, error_body, key_body
from .conftest import MakeClient
from .test_retry_policy import KEY_URL, calls

FRESH = SecretKey("sk_live_root_Fr3shK3yFr3shK3yFr3shK3y")
REVOKED = error_body("AUTH_API_KEY_REVOKED", "API key has been revoked")


def sent_tokens(mocked: aioresponses) -> list[str]:
    """The Authorization header of each GET /account/key, in order."""
    requests = (mocked.requests or {}).get(("GET", URL(KEY_URL)), [])
    return [call.kwargs["headers"]["Authorization"] for call in requests]


def with_reload(client: AccountClient, key: SecretKey | None) -> list[int]:
    """Make the client's credential reloadable from a stub store holding `key`."""
    asked: list[int] = []

    async def reload() -> SecretKey | None:
        asked.append(1)
        return key

    client.on_unauthorized(reload)
    return asked


async def test_a_401_reloads_a_newer_key_and_resends_with_it(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """The store has a newer key: the request is sent again with it, once, and the client
    (and its `with_options` copies) keep using it.
    """
    mocked.get(KEY_URL, status=401, payload=REVOKED)
    mocked.get(KEY_URL, payload=key_body())
    mocked.get(KEY_URL, payload=key_body())
    client = make_client()
    asked = with_reload(client, FRESH)

    await client.get_key()
    await client.with_options(timeout=5).get_key()

    assert asked == [1]
    assert client.api_key == FRESH
    assert sent_tokens(mocked) == [
        f"Bearer {API_KEY}",
        f"Bearer {FRESH.reveal()}",
        f"Bearer {FRESH.reveal()}",
    ]


@pytest.mark.parametrize("stored", [None, SecretKey(API_KEY)], ids=["empty", "same-key"])
async def test_a_401_is_raised_when_the_store_has_nothing_newer(
    mocked: aioresponses, make_client: MakeClient, stored: SecretKey | None
) -> None:
    """No stored key, or the same key: the 401 is raised after one request."""
    mocked.get(KEY_URL, status=401, payload=REVOKED, repeat=True)
    client = make_client()
    with_reload(client, stored)

    with pytest.raises(AuthenticationError):
        await client.get_key()

    assert calls(mocked, "GET", KEY_URL) == 1


async def test_the_reload_happens_once_per_request(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """When the reloaded key is refused too, the 401 is raised: no loop."""
    mocked.get(KEY_URL, status=401, payload=REVOKED, repeat=True)
    client = make_client()
    asked = with_reload(client, FRESH)

    with pytest.raises(AuthenticationError):
        await client.get_key()

    assert asked == [1]
    assert calls(mocked, "GET", KEY_URL) == 2


async def test_without_a_reload_a_401_is_raised_at_once(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """A plain client (no store attached) raises the 401 after one request."""
    mocked.get(KEY_URL, status=401, payload=REVOKED, repeat=True)

    with pytest.raises(AuthenticationError) as caught:
        await make_client().get_key()

    assert caught.value.code == "AUTH_API_KEY_REVOKED"
    assert calls(mocked, "GET", KEY_URL) == 1


async def test_a_request_with_an_explicit_token_never_reloads(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """The reissue probe sends the old key on purpose: its 401 is an answer, not a cue to
    reload (the probe reads it as "the reissue happened").
    """
    mocked.get(KEY_URL, status=401, payload=REVOKED, repeat=True)
    client = make_client()
    asked = with_reload(client, FRESH)

    with pytest.raises(AuthenticationError):
        await client._session.request("GET", "/account/key", dict, token=SecretKey(API_KEY))

    assert asked == []


async def test_an_explicit_token_with_a_body_sends_that_token_as_json(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """A per-request token replaces the client's credential, with the JSON content type."""
    url = KEY_URL.replace("/account/key", "/account/sub-keys")
    mocked.post(url, status=400, payload=error_body("BAD_REQUEST"))
    client = make_client()

    with pytest.raises(APIStatusError):
        await client._session.request(
            "POST", "/account/sub-keys", dict, body={"name": "x"}, token=FRESH
        )

    (call,) = (mocked.requests or {})[("POST", URL(url))]
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {FRESH.reveal()}"
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    assert call.kwargs["data"] == b'{"name":"x"}'


async def test_an_api_key_wins_over_a_session_token(
    mocked: aioresponses, make_client: MakeClient
) -> None:
    """Given both, the client sends the API key and keeps the JWT for later."""
    jwt = SecretKey("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    mocked.get(KEY_URL, payload=key_body())
    client = make_client(api_key=API_KEY, session_token=jwt)

    await client.get_key()

    assert sent_tokens(mocked) == [f"Bearer {API_KEY}"]
    credentials = client._session.shared.credentials
    assert credentials.session_token == jwt
    assert credentials.current == SecretKey(API_KEY)
