"""The fake's child-key routes: create, list, get, update, delete, reissue, validation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http, MakeFake


async def test_create_returns_the_plaintext_once(api: FakeCS2CapAPI, http: Http) -> None:
    """201 with the plaintext; later reads show metadata only, and the new key works."""
    reply = await http.post(
        "/account/sub-keys",
        token=api.root_key,
        json={"name": "bot", "quota_requests_per_month_override": 5000},
    )
    assert reply.status == 201
    body = reply.json
    info = body["key_info"]
    assert body["key"].startswith("sk_live_child_")
    assert body["message"]
    assert info["name"] == "bot"
    assert info["root_key_id"] == api.root_key_id
    assert info["quota_requests_per_month_override"] == 5000
    assert info["effective_quota_requests_per_month"] == 5000
    assert info["rate_requests_per_minute_override"] is None
    detail = await http.get(f"/account/sub-keys/{info['id']}", token=api.session_token)
    assert body["key"] not in detail.text
    assert detail.json == {"key": info, "requests_this_month": 0}
    assert api.is_active(body["key"])


async def test_the_26th_child_key_conflicts(api: FakeCS2CapAPI, http: Http) -> None:
    """With 25 active child keys a create answers 409; deleting one makes room again."""
    children = [api.add_child_key(f"k{n}") for n in range(25)]
    reply = await http.post("/account/sub-keys", token=api.root_key, json={"name": "26th"})
    assert (reply.status, reply.code) == (409, "CONFLICT")
    await http.delete(f"/account/sub-keys/{children[0].key_id}", token=api.root_key)
    reply = await http.post("/account/sub-keys", token=api.root_key, json={"name": "26th"})
    assert reply.status == 201


@pytest.mark.parametrize("tier", ["free", "starter", "pro"])
async def test_only_quant_accounts_create_child_keys(make_fake: MakeFake, tier: str) -> None:
    """Below the quant tier, creating a child key answers 403."""
    api = await make_fake(tier=tier)
    async with Http.open(api) as http:
        reply = await http.post("/account/sub-keys", token=api.root_key, json={"name": "x"})
    assert (reply.status, reply.code) == (403, "FORBIDDEN")


async def test_issuing_child_keys_needs_a_verified_email(api: FakeCS2CapAPI, http: Http) -> None:
    """Unverified email: creating or reissuing a child key answers 403."""
    child = api.add_child_key("bot")
    api.set_email_verified(False)
    created = await http.post("/account/sub-keys", token=api.root_key, json={"name": "x"})
    reissued = await http.post(f"/account/sub-keys/{child.key_id}/reissue", token=api.root_key)
    assert created.status == reissued.status == 403
    assert api.is_active(child.key)


async def test_pagination_is_clamped_and_flags_neighbours(api: FakeCS2CapAPI, http: Http) -> None:
    """Limit clamps to 1..100 (default 25); has_next/has_prev always sent; oldest first."""
    ids = [api.add_child_key(f"k{n}").key_id for n in range(7)]

    async def page(**params: str) -> dict[str, Any]:
        reply = await http.get("/account/sub-keys", token=api.root_key, params=params)
        assert reply.status == 200
        body: dict[str, Any] = reply.json
        return body

    first = await page(limit="3")
    assert [item["key"]["id"] for item in first["keys"]] == ids[:3]
    assert first["pagination"] == {
        "limit": 3,
        "offset": 0,
        "total": 7,
        "has_next": True,
        "has_prev": False,
    }
    last = await page(limit="3", offset="6")
    assert [item["key"]["id"] for item in last["keys"]] == ids[6:]
    assert (last["pagination"]["has_next"], last["pagination"]["has_prev"]) == (False, True)
    assert (await page())["pagination"]["limit"] == 25
    assert (await page(limit="0"))["pagination"]["limit"] == 1
    assert (await page(limit="-5"))["pagination"]["limit"] == 1
    assert (await page(limit="500"))["pagination"]["limit"] == 100
    beyond = await page(offset="50")
    assert beyond["keys"] == []
    assert beyond["pagination"]["total"] == 7
    assert beyond["pagination"]["has_next"] is False


async def test_usage_counters_show_in_listings(api: FakeCS2CapAPI, http: Http) -> None:
    """`record_usage` adds to a key's `requests_this_month`; account calls do not."""
    child = api.add_child_key("bot")
    await http.get("/account/key", token=child.key)
    api.record_usage(child.key_id, 41)
    api.record_usage(child.key_id)
    listing = (await http.get("/account/sub-keys", token=api.root_key)).json
    assert listing["keys"][0]["requests_this_month"] == 42


async def test_update_changes_only_what_was_sent(api: FakeCS2CapAPI, http: Http) -> None:
    """Omitted fields stay; a null override is removed; a null name is left alone."""
    child = api.add_child_key(
        "bot", rate_requests_per_minute_override=50, quota_requests_per_month_override=900
    )
    path = f"/account/sub-keys/{child.key_id}"
    renamed = (await http.patch(path, token=api.root_key, json={"name": "bot-2"})).json
    assert renamed["key"]["name"] == "bot-2"
    assert renamed["key"]["rate_requests_per_minute_override"] == 50
    cleared = await http.patch(
        path,
        token=api.root_key,
        json={
            "rate_requests_per_minute_override": None,
            "quota_requests_per_month_override": 800,
            "name": None,
        },
    )
    info = cleared.json["key"]
    assert info["name"] == "bot-2"
    assert info["rate_requests_per_minute_override"] is None
    assert info["effective_rate_requests_per_minute"] == 300
    assert info["quota_requests_per_month_override"] == 800
    assert info["effective_quota_requests_per_month"] == 800
    unchanged = await http.patch(path, token=api.root_key, json={})
    assert unchanged.json["key"] == {**info, "last_used_at": unchanged.json["key"]["last_used_at"]}


async def test_delete_revokes_the_child(api: FakeCS2CapAPI, http: Http) -> None:
    """DELETE answers ok/key_id/revoked_at; the key then gets 401 REVOKED and reads 404."""
    child = api.add_child_key("bot")
    path = f"/account/sub-keys/{child.key_id}"
    reply = await http.delete(path, token=api.root_key)
    assert reply.json["ok"] is True
    assert reply.json["key_id"] == child.key_id
    assert reply.json["revoked_at"].endswith("Z")
    assert (await http.get("/account/key", token=child.key)).code == "AUTH_API_KEY_REVOKED"
    assert (await http.get(path, token=api.root_key)).status == 404
    assert (await http.delete(path, token=api.root_key)).status == 404
    assert (await http.get("/account/sub-keys", token=api.root_key)).json["keys"] == []


async def test_reissuing_a_child_carries_settings_over(api: FakeCS2CapAPI, http: Http) -> None:
    """The new child keeps name and overrides; the old one is revoked."""
    child = api.add_child_key("bot", rate_requests_per_minute_override=12)
    reply = await http.post(f"/account/sub-keys/{child.key_id}/reissue", token=api.root_key)
    assert reply.status == 200
    info = reply.json["key_info"]
    assert (info["name"], info["rate_requests_per_minute_override"]) == ("bot", 12)
    assert info["id"] != child.key_id
    assert not api.is_active(child.key)
    assert (await http.get("/account/key", token=reply.json["key"])).status == 200


async def test_root_and_root_id_are_not_sub_keys(api: FakeCS2CapAPI, http: Http) -> None:
    """Unknown ids and the root key's own id answer 404 NOT_FOUND."""
    for key_id in (str(uuid.uuid4()), api.root_key_id):
        reply = await http.get(f"/account/sub-keys/{key_id}", token=api.root_key)
        assert (reply.status, reply.code) == (404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, [("missing", ["body", "name"])]),
        ({"name": ""}, [("string_too_short", ["body", "name"])]),
        ({"name": "x" * 101}, [("string_too_long", ["body", "name"])]),
        ({"name": 5}, [("string_type", ["body", "name"])]),
        (
            {"name": "x", "rate_requests_per_minute_override": 0},
            [("greater_than_equal", ["body", "rate_requests_per_minute_override"])],
        ),
        (
            {"name": "x", "rate_requests_per_minute_override": 301},
            [("less_than_equal", ["body", "rate_requests_per_minute_override"])],
        ),
        (
            {"name": "x", "quota_requests_per_month_override": 1_000_001},
            [("less_than_equal", ["body", "quota_requests_per_month_override"])],
        ),
        (
            {"name": "x", "quota_requests_per_month_override": True},
            [("int_type", ["body", "quota_requests_per_month_override"])],
        ),
        (
            {"name": None, "rate_requests_per_minute_override": "5"},
            [
                ("string_type", ["body", "name"]),
                ("int_type", ["body", "rate_requests_per_minute_override"]),
            ],
        ),
        ([1, 2], [("model_attributes_type", ["body"])]),
    ],
)
async def test_invalid_create_bodies_list_every_problem(
    api: FakeCS2CapAPI, http: Http, body: object, expected: list[tuple[str, list[str]]]
) -> None:
    """422 VALIDATION_ERROR with one FastAPI-style `{type, loc, msg, input}` per problem."""
    reply = await http.post("/account/sub-keys", token=api.root_key, json=body)
    assert (reply.status, reply.code) == (422, "VALIDATION_ERROR")
    detail = reply.json["detail"]
    assert [(item["type"], item["loc"]) for item in detail] == expected
    for item in detail:
        assert item["msg"]
        assert "input" in item
    assert api.key_info()["is_active"]
    assert (await http.get("/account/sub-keys", token=api.root_key)).json["keys"] == []


async def test_422_details_carry_inputs_and_limits(api: FakeCS2CapAPI, http: Http) -> None:
    """Object inputs are echoed, scalar ones are null (the spec types `input` as object)."""
    missing = (await http.post("/account/sub-keys", token=api.root_key, json={"x": 1})).json
    assert missing["detail"][0]["input"] == {"x": 1}
    too_big = await http.post(
        "/account/sub-keys",
        token=api.root_key,
        json={"name": "x", "rate_requests_per_minute_override": 999},
    )
    item = too_big.json["detail"][0]
    assert item["input"] is None
    assert item["ctx"] == {"le": 300}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [(b"", "missing"), (b"{not json", "json_invalid"), (b"\xff\xfe", "json_invalid")],
)
async def test_unparseable_bodies_are_422(
    api: FakeCS2CapAPI, http: Http, raw: bytes, kind: str
) -> None:
    """An empty or non-JSON body is a 422 at `body`."""
    reply = await http.post("/account/sub-keys", token=api.root_key, data=raw)
    assert reply.status == 422
    assert reply.json["detail"][0]["type"] == kind
    assert reply.json["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    ("params", "loc"),
    [({"limit": "ten"}, ["query", "limit"]), ({"offset": "-1"}, ["query", "offset"])],
)
async def test_bad_query_parameters_are_422(
    api: FakeCS2CapAPI, http: Http, params: dict[str, str], loc: list[str]
) -> None:
    """A non-integer limit or a negative offset is a 422 at its query location."""
    reply = await http.get("/account/sub-keys", token=api.root_key, params=params)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == loc


async def test_bad_key_ids_are_422(api: FakeCS2CapAPI, http: Http) -> None:
    """A `key_id` that is not a UUID is a 422 at `path.key_id`, on every sub-key route."""
    for method in ("GET", "PATCH", "DELETE"):
        reply = await http.request(method, "/account/sub-keys/nope", token=api.root_key, json={})
        assert reply.status == 422
        assert reply.json["detail"][0]["loc"] == ["path", "key_id"]
    reply = await http.post("/account/sub-keys/nope/reissue", token=api.root_key)
    assert reply.json["detail"][0]["type"] == "uuid_parsing"
