"""Every route: what the client sends (method, path, headers, query, body) and what it returns."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aioresponses import aioresponses
from aioresponses.core import RequestCall

import cs2cap_account
from cs2cap_account import (
    AccountClient,
    CreatedSubKey,
    FakeClock,
    KeyInfo,
    MalformedResponseError,
    Pagination,
    ReissuedKey,
    RevokedSubKey,
    SecretKey,
    SubKeyDetail,
    SubKeyPage,
)

from ._payloads import (
    BASE_URL,
    CHILD_ID,
    CHILD_KEY,
    NEW_ROOT_ID,
    NEW_ROOT_KEY,
    ROOT_ID,
    ROOT_KEY,
    SESSION_JWT,
    calls,
    child_info,
    created,
    detail,
    key_info,
    only_call,
    page,
    reissued,
    sent_headers,
    sent_json,
    total_calls,
    url,
)

UTC = dt.timezone.utc
SUB_KEY_PATH = f"/account/sub-keys/{CHILD_ID}"


def assert_sent_headers(call: RequestCall, *, token: str, json_body: bool) -> None:
    """The request carried the bearer token, Accept, a UA, and Content-Type only with a body."""
    headers = sent_headers(call)
    assert headers["Authorization"] == f"Bearer {token}"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"cs2cap-account/{cs2cap_account.__version__}"
    if json_body:
        assert headers["Content-Type"] == "application/json"
    else:
        assert "Content-Type" not in headers
        assert call.kwargs["data"] is None
    assert call.kwargs["allow_redirects"] is False


EXPECTED_CHILD = KeyInfo(
    id=CHILD_ID,
    key_prefix="sk_live_child",
    is_active=True,
    created_at=dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC),
    name="bot",
    root_key_id=ROOT_ID,
    is_root_key=False,
    last_used_at=dt.datetime(2026, 3, 5, 8, 0, 0, 250_000, tzinfo=UTC),
    expires_at=None,
    quota_requests_per_month_override=None,
    rate_requests_per_minute_override=60,
    effective_quota_requests_per_month=1_000_000,
    effective_rate_requests_per_minute=60,
)


async def test_get_key_request_and_model(mock: aioresponses, client: AccountClient) -> None:
    """`get_key()` sends a bare authenticated GET and maps every KeyInfo field."""
    mock.get(url("/account/key"), payload={"key": key_info(expires_at="2027-03-02T10:30:00Z")})

    info = await client.get_key()

    call = only_call(mock, "GET", "/account/key")
    assert_sent_headers(call, token=ROOT_KEY, json_body=False)
    assert call.kwargs["params"] is None
    assert info == KeyInfo(
        id=ROOT_ID,
        key_prefix="sk_live_root",
        is_active=True,
        created_at=dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC),
        name="production",
        root_key_id=ROOT_ID,
        is_root_key=True,
        last_used_at=dt.datetime(2026, 3, 5, 8, 0, 0, 250_000, tzinfo=UTC),
        expires_at=dt.datetime(2027, 3, 2, 10, 30, tzinfo=UTC),
        quota_requests_per_month_override=None,
        rate_requests_per_minute_override=None,
        effective_quota_requests_per_month=1_000_000,
        effective_rate_requests_per_minute=300,
    )


async def test_reissue_key_request_and_model(mock: aioresponses, client: AccountClient) -> None:
    """`reissue_key()` asks which key is active, then POSTs with no body; the key is a secret."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=reissued())

    new = await client.reissue_key()

    assert_sent_headers(only_call(mock, "GET", "/account/key"), token=ROOT_KEY, json_body=False)
    post = only_call(mock, "POST", "/account/key/reissue")
    assert_sent_headers(post, token=ROOT_KEY, json_body=False)
    assert isinstance(new, ReissuedKey)
    assert isinstance(new.key, SecretKey)
    assert new.key.reveal() == NEW_ROOT_KEY
    assert new.key_prefix == "sk_live_root"
    assert new.id == NEW_ROOT_ID
    assert new.created_at == dt.datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    assert new.message.startswith("Store this key")


async def test_reissue_key_switches_client_and_copies(
    mock: aioresponses, client: AccountClient
) -> None:
    """After a reissue, the client and a `with_options` copy made earlier send the new key."""
    copy = client.with_options(max_retries=0)
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=reissued())
    mock.get(url("/account/key"), payload={"key": key_info(id=NEW_ROOT_ID)}, repeat=True)

    await client.reissue_key()
    await client.get_key()
    await copy.get_key()

    gets = calls(mock, "GET", "/account/key")
    assert [sent_headers(c)["Authorization"] for c in gets] == [
        f"Bearer {ROOT_KEY}",
        f"Bearer {NEW_ROOT_KEY}",
        f"Bearer {NEW_ROOT_KEY}",
    ]
    assert client.api_key == SecretKey(NEW_ROOT_KEY)
    assert copy.api_key == SecretKey(NEW_ROOT_KEY)


async def test_reissue_through_a_copy_switches_the_original(
    mock: aioresponses, client: AccountClient
) -> None:
    """A reissue through a `with_options` copy also switches the client it was copied from."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=reissued())

    await client.with_options(timeout=5.0).reissue_key()

    assert client.api_key == SecretKey(NEW_ROOT_KEY)


async def test_reissue_key_can_keep_the_old_key(mock: aioresponses, client: AccountClient) -> None:
    """`use_new_key=False` returns the new key but leaves the client on the old one."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=reissued())

    new = await client.reissue_key(use_new_key=False)

    assert new.key == SecretKey(NEW_ROOT_KEY)
    assert client.api_key == SecretKey(ROOT_KEY)


async def test_use_key_switches_credential(mock: aioresponses, client: AccountClient) -> None:
    """`use_key()` makes every later request carry the given key."""
    mock.get(url("/account/key"), payload={"key": key_info()})

    client.use_key(NEW_ROOT_KEY)
    await client.get_key()

    call = only_call(mock, "GET", "/account/key")
    assert sent_headers(call)["Authorization"] == f"Bearer {NEW_ROOT_KEY}"
    assert client.api_key == SecretKey(NEW_ROOT_KEY)


async def test_list_sends_limit_and_offset(mock: aioresponses, client: AccountClient) -> None:
    """`sub_keys.list(limit, offset)` sends both as query parameters and maps the page."""
    body = page([detail(requests_this_month=7)], total=21, limit=10, offset=20)
    mock.get(url("/account/sub-keys", limit=10, offset=20), payload=body)

    result = await client.sub_keys.list(limit=10, offset=20)

    call = only_call(mock, "GET", "/account/sub-keys", limit=10, offset=20)
    assert_sent_headers(call, token=ROOT_KEY, json_body=False)
    assert call.kwargs["params"] == {"limit": "10", "offset": "20"}
    assert result == SubKeyPage(
        keys=(SubKeyDetail(key=EXPECTED_CHILD, requests_this_month=7),),
        pagination=Pagination(limit=10, offset=20, total=21, has_next=False, has_prev=True),
    )


async def test_list_defaults(mock: aioresponses, client: AccountClient) -> None:
    """Without arguments `list()` asks for the first page of 25."""
    mock.get(url("/account/sub-keys", limit=25, offset=0), payload=page([], total=0))

    result = await client.sub_keys.list()

    assert only_call(mock, "GET", "/account/sub-keys", limit=25, offset=0)
    assert result.keys == ()
    assert result.pagination.total == 0


async def test_list_pagination_without_optional_fields(
    mock: aioresponses, client: AccountClient
) -> None:
    """A pagination object with only limit/offset/total (as in the docs' example) parses."""
    body = {"keys": [], "pagination": {"limit": 25, "offset": 0, "total": 0}}
    mock.get(url("/account/sub-keys", limit=25, offset=0), payload=body)

    result = await client.sub_keys.list()

    assert result.pagination == Pagination(limit=25, offset=0, total=0)
    assert result.pagination.has_next is None
    assert result.pagination.has_prev is None
    assert result.pagination.next_cursor is None


def child(n: int) -> dict[str, Any]:
    """The n-th child key's detail object."""
    return detail(child_info(id=f"child-{n}", name=f"bot-{n}"), requests_this_month=n)


async def test_iterate_follows_total_across_pages(
    mock: aioresponses, client: AccountClient
) -> None:
    """`iterate()` asks for page after page until `total` items were seen."""
    children = [child(n) for n in range(5)]
    for offset in (0, 2, 4):
        body = page(children[offset : offset + 2], total=5, limit=2, offset=offset)
        mock.get(url("/account/sub-keys", limit=2, offset=offset), payload=body)

    seen = [d.key.id async for d in client.sub_keys.iterate(page_size=2)]

    assert seen == [f"child-{n}" for n in range(5)]
    assert total_calls(mock) == 3


async def test_iterate_with_a_server_returning_short_pages(
    mock: aioresponses, client: AccountClient
) -> None:
    """A server that returns fewer items than `limit` is followed by offset, not page size."""
    children = [child(n) for n in range(5)]
    for offset in (0, 2, 4):
        body = page(children[offset : offset + 2], total=5, limit=100, offset=offset)
        mock.get(url("/account/sub-keys", limit=100, offset=offset), payload=body)

    seen = [d.requests_this_month async for d in client.sub_keys.iterate()]

    assert seen == [0, 1, 2, 3, 4]
    for offset in (0, 2, 4):
        assert only_call(mock, "GET", "/account/sub-keys", limit=100, offset=offset)
    assert total_calls(mock) == 3


async def test_iterate_stops_on_an_empty_page(mock: aioresponses, client: AccountClient) -> None:
    """An empty page ends iteration even if `total` promised more (no endless loop)."""
    mock.get(url("/account/sub-keys", limit=100, offset=0), payload=page([child(0)], total=9))
    mock.get(url("/account/sub-keys", limit=100, offset=1), payload=page([], total=9, offset=1))

    seen = [d async for d in client.sub_keys.iterate()]

    assert len(seen) == 1
    assert total_calls(mock) == 2


async def test_iterate_with_no_sub_keys(mock: aioresponses, client: AccountClient) -> None:
    """With no child keys, `iterate()` sends one request and yields nothing."""
    mock.get(url("/account/sub-keys", limit=100, offset=0), payload=page([], total=0))

    assert [d async for d in client.sub_keys.iterate()] == []
    assert total_calls(mock) == 1


async def test_create_sends_name_and_given_overrides(
    mock: aioresponses, client: AccountClient
) -> None:
    """`create()` POSTs JSON with the name and only the overrides that were given."""
    mock.post(url("/account/sub-keys"), status=201, payload=created())

    made = await client.sub_keys.create("bot", rate_requests_per_minute_override=60)

    call = only_call(mock, "POST", "/account/sub-keys")
    assert_sent_headers(call, token=ROOT_KEY, json_body=True)
    assert sent_json(call) == {"name": "bot", "rate_requests_per_minute_override": 60}
    assert made == CreatedSubKey(
        key=SecretKey(CHILD_KEY),
        key_info=EXPECTED_CHILD,
        message="Store this key now; it will not be shown again.",
    )
    assert made.key.reveal() == CHILD_KEY


async def test_create_with_both_overrides(mock: aioresponses, client: AccountClient) -> None:
    """Both overrides are sent when both are given."""
    mock.post(url("/account/sub-keys"), status=201, payload=created())

    await client.sub_keys.create(
        "bot", quota_requests_per_month_override=5000, rate_requests_per_minute_override=10
    )

    assert sent_json(only_call(mock, "POST", "/account/sub-keys")) == {
        "name": "bot",
        "quota_requests_per_month_override": 5000,
        "rate_requests_per_minute_override": 10,
    }


async def test_create_with_name_only(mock: aioresponses, client: AccountClient) -> None:
    """Without overrides the body is just the name."""
    mock.post(url("/account/sub-keys"), status=201, payload=created())

    await client.sub_keys.create("bot")

    assert sent_json(only_call(mock, "POST", "/account/sub-keys")) == {"name": "bot"}


async def test_get_sub_key(mock: aioresponses, client: AccountClient) -> None:
    """`get(id)` GETs the child key's path and maps the detail."""
    mock.get(url(SUB_KEY_PATH), payload=detail(requests_this_month=3))

    one = await client.sub_keys.get(CHILD_ID)

    assert_sent_headers(only_call(mock, "GET", SUB_KEY_PATH), token=ROOT_KEY, json_body=False)
    assert one == SubKeyDetail(key=EXPECTED_CHILD, requests_this_month=3)


async def test_key_id_is_quoted_into_one_path_segment(
    mock: aioresponses, client: AccountClient
) -> None:
    """A key id with `/` or `?` cannot change the route: it is percent-encoded."""
    mock.get(url("/account/sub-keys/a%2Fb%3Fc"), payload=detail())

    await client.sub_keys.get("a/b?c")

    assert only_call(mock, "GET", "/account/sub-keys/a%2Fb%3Fc")


@pytest.mark.parametrize(("bad", "error"), [("", ValueError), (None, TypeError), (5, TypeError)])
async def test_key_id_must_be_a_non_empty_string(
    mock: aioresponses, client: AccountClient, bad: Any, error: type[Exception]
) -> None:
    """An empty key id is a ValueError, a non-string one a TypeError; nothing is sent."""
    with pytest.raises(error, match="key_id"):
        await client.sub_keys.get(bad)
    assert total_calls(mock) == 0


@pytest.mark.parametrize("pasted", [ROOT_KEY, SESSION_JWT, CHILD_KEY])
async def test_a_key_pasted_as_a_key_id_is_refused_unsent(
    mock: aioresponses, client: AccountClient, pasted: str
) -> None:
    """A key or token where a key id belongs would sit in the URL and in every error
    message: it is refused before anything is sent, and the refusal does not repeat it.
    """
    for call in (client.sub_keys.get, client.sub_keys.delete, client.sub_keys.reissue):
        with pytest.raises(ValueError, match="not a key id") as caught:
            await call(pasted)
        assert pasted not in str(caught.value)
    assert total_calls(mock) == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": "25"}, TypeError),
        ({"limit": True}, TypeError),
        ({"offset": 1.5}, TypeError),
        ({"offset": -1}, ValueError),
    ],
)
async def test_list_arguments_are_checked(
    mock: aioresponses, client: AccountClient, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A page's limit and offset are ints (offset 0 or more): refused before sending."""
    with pytest.raises(error):
        await client.sub_keys.list(**kwargs)
    assert total_calls(mock) == 0


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (101, ValueError), (2.0, TypeError)])
async def test_iterate_page_size_is_checked(
    mock: aioresponses, client: AccountClient, size: Any, error: type[Exception]
) -> None:
    """`page_size` is an int from 1 to 100 (what the server serves)."""
    with pytest.raises(error, match="page_size"):
        [d async for d in client.sub_keys.iterate(page_size=size)]
    assert total_calls(mock) == 0


async def test_iterate_refuses_pages_that_repeat(mock: aioresponses, client: AccountClient) -> None:
    """A server that answers every offset with the same page and a huge total: the second
    page brings nothing new, which ends the iteration with `MalformedResponseError`.
    """
    same = page([child(0), child(1)], total=10**9)
    mock.get(url("/account/sub-keys", limit=100, offset=0), payload=same)
    mock.get(url("/account/sub-keys", limit=100, offset=2), payload=same)

    seen: list[int] = []

    async def drain() -> None:
        async for listed in client.sub_keys.iterate():
            seen.append(listed.requests_this_month)

    with pytest.raises(MalformedResponseError, match="repeats"):
        await drain()

    assert seen == [0, 1]
    assert total_calls(mock) == 2


async def test_iterate_gives_up_past_the_most_an_account_can_hold(
    mock: aioresponses, client: AccountClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh keys forever under a huge total: iteration stops past `MAX_ITERATED`."""
    monkeypatch.setattr("cs2cap_account._client.MAX_ITERATED", 3)
    for offset in (0, 2):
        body = page([child(offset), child(offset + 1)], total=10**9, offset=offset)
        mock.get(url("/account/sub-keys", limit=100, offset=offset), payload=body)

    with pytest.raises(MalformedResponseError, match="more than 3"):
        [d async for d in client.sub_keys.iterate()]
    assert total_calls(mock) == 2


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [
        ({}, {}),
        ({"name": "renamed"}, {"name": "renamed"}),
        ({"rate_requests_per_minute_override": None}, {"rate_requests_per_minute_override": None}),
        (
            {"quota_requests_per_month_override": 100, "rate_requests_per_minute_override": None},
            {"quota_requests_per_month_override": 100, "rate_requests_per_minute_override": None},
        ),
        (
            {
                "name": "x",
                "quota_requests_per_month_override": None,
                "rate_requests_per_minute_override": 5,
            },
            {
                "name": "x",
                "quota_requests_per_month_override": None,
                "rate_requests_per_minute_override": 5,
            },
        ),
    ],
)
async def test_update_sends_only_given_fields(
    mock: aioresponses, client: AccountClient, kwargs: dict[str, Any], body: dict[str, Any]
) -> None:
    """`update()` omits arguments not passed and sends `None` as JSON null."""
    mock.patch(url(SUB_KEY_PATH), payload=detail())

    result = await client.sub_keys.update(CHILD_ID, **kwargs)

    call = only_call(mock, "PATCH", SUB_KEY_PATH)
    assert_sent_headers(call, token=ROOT_KEY, json_body=True)
    assert sent_json(call) == body
    assert result.key == EXPECTED_CHILD


async def test_update_null_is_literally_null(mock: aioresponses, client: AccountClient) -> None:
    """The wire body for a removed override holds the JSON literal `null`."""
    mock.patch(url(SUB_KEY_PATH), payload=detail())

    await client.sub_keys.update(CHILD_ID, quota_requests_per_month_override=None)

    data = only_call(mock, "PATCH", SUB_KEY_PATH).kwargs["data"]
    assert data == b'{"quota_requests_per_month_override":null}'


async def test_delete_sub_key(mock: aioresponses, client: AccountClient) -> None:
    """`delete(id)` sends DELETE without a body and maps the revocation."""
    body = {"ok": True, "key_id": CHILD_ID, "revoked_at": "2026-03-07T09:15:30.5+00:00"}
    mock.delete(url(SUB_KEY_PATH), payload=body)

    gone = await client.sub_keys.delete(CHILD_ID)

    assert_sent_headers(only_call(mock, "DELETE", SUB_KEY_PATH), token=ROOT_KEY, json_body=False)
    assert gone == RevokedSubKey(
        ok=True,
        key_id=CHILD_ID,
        revoked_at=dt.datetime(2026, 3, 7, 9, 15, 30, 500_000, tzinfo=UTC),
    )


async def test_delete_tolerates_a_bare_ok(mock: aioresponses, client: AccountClient) -> None:
    """A delete answer without `key_id`/`revoked_at` is filled with the id that was deleted."""
    mock.delete(url(SUB_KEY_PATH), payload={"ok": True})

    gone = await client.sub_keys.delete(CHILD_ID)

    assert gone == RevokedSubKey(ok=True, key_id=CHILD_ID, revoked_at=None)


async def test_reissue_sub_key(mock: aioresponses, client: AccountClient) -> None:
    """`sub_keys.reissue(id)` reads the old child (what a lost response would need), then
    POSTs to `/reissue` without a body and returns the new key.
    """
    new_child = "sk_live_child_Z9yX8wV7uT6sR5qP4oN3mL2k"
    mock.get(url(SUB_KEY_PATH), payload=detail())
    mock.post(url(SUB_KEY_PATH + "/reissue"), payload=created(key=new_child))

    again = await client.sub_keys.reissue(CHILD_ID)

    post = only_call(mock, "POST", SUB_KEY_PATH + "/reissue")
    assert_sent_headers(post, token=ROOT_KEY, json_body=False)
    assert again.key == SecretKey(new_child)
    assert again.key_info == EXPECTED_CHILD


async def test_session_token_is_sent_as_bearer(mock: aioresponses, clock: FakeClock) -> None:
    """A client built from a session JWT authenticates with `Bearer <jwt>`."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as c:
        await c.get_key()
        assert c.api_key is None

    call = only_call(mock, "GET", "/account/key")
    assert sent_headers(call)["Authorization"] == f"Bearer {SESSION_JWT}"


async def test_api_key_wins_over_session_token(mock: aioresponses, clock: FakeClock) -> None:
    """Given both, the client sends the API key."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    async with AccountClient(
        ROOT_KEY, session_token=SESSION_JWT, base_url=BASE_URL, clock=clock
    ) as c:
        await c.get_key()

    call = only_call(mock, "GET", "/account/key")
    assert sent_headers(call)["Authorization"] == f"Bearer {ROOT_KEY}"
