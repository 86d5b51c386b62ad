"""Response bodies to models: timestamps, tolerance of growth, and strictness on bad shapes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest
from aioresponses import aioresponses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs2cap_account import (
    AccountClient,
    CreatedSubKey,
    CS2CapError,
    MalformedResponseError,
    ReissuedKey,
    RevokedSubKey,
    SubKeyDetail,
    SubKeyLostError,
    SubKeyPage,
)
from cs2cap_account._converter import KeyEnvelope, parse_timestamp, structure

from ._payloads import (
    CHILD_ID,
    ROOT_ID,
    calls,
    created,
    detail,
    key_info,
    minimal_key_info,
    page,
    reissued,
    total_calls,
    url,
)

UTC = dt.timezone.utc
SUB_KEY_PATH = f"/account/sub-keys/{CHILD_ID}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:30:00Z", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("2026-03-02T10:30:00+00:00", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("2026-03-02T10:30:00.5Z", dt.datetime(2026, 3, 2, 10, 30, 0, 500_000, tzinfo=UTC)),
        ("2026-03-02T10:30:00.123456Z", dt.datetime(2026, 3, 2, 10, 30, 0, 123_456, tzinfo=UTC)),
        (
            "2026-03-02T10:30:00.123456789+00:00",
            dt.datetime(2026, 3, 2, 10, 30, 0, 123_456, tzinfo=UTC),
        ),
        ("2026-03-02T12:00:00+01:30", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("2026-03-02T05:30:00-05:00", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("2026-03-02t10:30:00z", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
        ("2026-03-02T10:30:00", dt.datetime(2026, 3, 2, 10, 30, tzinfo=UTC)),
    ],
)
async def test_timestamps_are_timezone_aware(
    mock: aioresponses, client: AccountClient, text: str, expected: dt.datetime
) -> None:
    """`Z`, `+00:00`, other offsets and fractional seconds all parse to aware datetimes."""
    mock.get(url("/account/key"), payload={"key": key_info(created_at=text, expires_at=text)})

    info = await client.get_key()

    for value in (info.created_at, info.expires_at):
        assert value is not None
        assert value.tzinfo is not None
        assert value == expected


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [
                UTC,
                dt.timezone(dt.timedelta(hours=5, minutes=30)),
                dt.timezone(-dt.timedelta(hours=8)),
            ]
        ),
    )
)
def test_parse_timestamp_round_trips_isoformat(value: dt.datetime) -> None:
    """Any aware datetime written by `isoformat()` reads back as the same instant."""
    parsed = parse_timestamp(value.isoformat())
    assert parsed == value
    assert parsed.utcoffset() == value.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-03-02",
        "2026-03-02T10:30Z",
        "2026-13-02T10:30:00Z",
        "2026-02-30T10:30:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T10:30:00+24:00",
        "2026-03-02T10:30:00.1234567890Z",
        "2026-03-02T10:30:00Z trailing",
        "",
    ],
)
async def test_bad_timestamps_name_the_field(
    mock: aioresponses, client: AccountClient, text: str
) -> None:
    """A timestamp that is not a real ISO 8601 instant is a MalformedResponseError on its field."""
    mock.get(url("/account/key"), payload={"key": key_info(last_used_at=text)})

    with pytest.raises(MalformedResponseError) as caught:
        await client.get_key()

    assert caught.value.field == "key.last_used_at"
    assert caught.value.status_code == 200


async def test_unknown_fields_are_ignored(mock: aioresponses, client: AccountClient) -> None:
    """Fields the API adds later, at any level, do not break parsing."""
    body = {
        "key": key_info(scopes=["read"], region={"name": "eu"}, is_active=True),
        "request_id": "r-1",
    }
    mock.get(url("/account/key"), payload=body)

    info = await client.get_key()

    assert info.id == ROOT_ID
    assert not hasattr(info, "scopes")


async def test_missing_optional_fields_take_defaults(
    mock: aioresponses, client: AccountClient
) -> None:
    """A KeyInfo with only the spec's required fields gets the documented defaults."""
    mock.get(url("/account/key"), payload={"key": minimal_key_info()})

    info = await client.get_key()

    assert info.name is None
    assert info.root_key_id is None
    assert info.is_root_key is True
    assert info.last_used_at is None
    assert info.expires_at is None
    assert info.quota_requests_per_month_override is None
    assert info.rate_requests_per_minute_override is None
    assert info.effective_quota_requests_per_month == 0
    assert info.effective_rate_requests_per_minute == 0


async def test_reissue_without_message_defaults_to_empty(
    mock: aioresponses, client: AccountClient
) -> None:
    """`message` is optional in a reissue answer."""
    body = reissued()
    del body["message"]
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=body)

    new = await client.reissue_key()

    assert new.message == ""


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    """A copy of `body` without `field`."""
    return {name: value for name, value in body.items() if name != field}


# (body of GET /account/key, the field the error must name)
BAD_KEY_BODIES: list[tuple[Any, str]] = [
    ({"key": without(key_info(), "created_at")}, "key.created_at"),
    ({"key": without(key_info(), "id")}, "key.id"),
    ({"key": without(key_info(), "key_prefix")}, "key.key_prefix"),
    ({"key": without(key_info(), "is_active")}, "key.is_active"),
    ({}, "key"),
    ({"key": None}, "key"),
    ({"key": []}, "key"),
    ({"key": "sk_live_root"}, "key"),
    ({"key": key_info(id=None)}, "key.id"),
    ({"key": key_info(id=123)}, "key.id"),
    ({"key": key_info(name=False)}, "key.name"),
    ({"key": key_info(is_active=None)}, "key.is_active"),
    ({"key": key_info(is_active=1)}, "key.is_active"),
    ({"key": key_info(is_active="true")}, "key.is_active"),
    ({"key": key_info(is_root_key=0)}, "key.is_root_key"),
    (
        {"key": key_info(effective_rate_requests_per_minute="300")},
        "key.effective_rate_requests_per_minute",
    ),
    (
        {"key": key_info(effective_rate_requests_per_minute=True)},
        "key.effective_rate_requests_per_minute",
    ),
    (
        {"key": key_info(effective_rate_requests_per_minute=300.5)},
        "key.effective_rate_requests_per_minute",
    ),
    (
        {"key": key_info(effective_quota_requests_per_month=None)},
        "key.effective_quota_requests_per_month",
    ),
    (
        {"key": key_info(quota_requests_per_month_override=False)},
        "key.quota_requests_per_month_override",
    ),
    (
        {"key": key_info(rate_requests_per_minute_override=[60])},
        "key.rate_requests_per_minute_override",
    ),
    ({"key": key_info(created_at=None)}, "key.created_at"),
    ({"key": key_info(created_at=1772447400)}, "key.created_at"),
    ({"key": key_info(expires_at={"at": "2026-03-02T10:30:00Z"})}, "key.expires_at"),
]


@pytest.mark.parametrize(("body", "field"), BAD_KEY_BODIES)
async def test_malformed_key_body_names_the_field(
    mock: aioresponses, client: AccountClient, body: Any, field: str
) -> None:
    """Missing required fields and wrong JSON types raise MalformedResponseError on the field."""
    mock.get(url("/account/key"), payload=body)

    with pytest.raises(MalformedResponseError) as caught:
        await client.get_key()

    error = caught.value
    assert error.field == field
    assert field in str(error)
    assert error.status_code == 200
    assert total_calls(mock) == 1, "a malformed answer to a GET is not retried"


# (route name, path, method, body, field)
BAD_ROUTE_BODIES: list[tuple[str, str, str, Any, str]] = [
    (
        "list",
        "/account/sub-keys",
        "GET",
        {"keys": {}, "pagination": page([], total=0)["pagination"]},
        "keys",
    ),
    (
        "list",
        "/account/sub-keys",
        "GET",
        {"keys": [None], "pagination": page([], total=0)["pagination"]},
        "keys[0]",
    ),
    ("list", "/account/sub-keys", "GET", {"keys": []}, "pagination"),
    (
        "list",
        "/account/sub-keys",
        "GET",
        {"keys": [], "pagination": {"limit": 25, "offset": 0}},
        "pagination.total",
    ),
    (
        "list",
        "/account/sub-keys",
        "GET",
        {"keys": [], "pagination": {"limit": 25, "offset": 0, "total": "1"}},
        "pagination.total",
    ),
    (
        "list",
        "/account/sub-keys",
        "GET",
        {"keys": [], "pagination": {"limit": 25, "offset": 0, "total": 0, "has_next": "no"}},
        "pagination.has_next",
    ),
    (
        "list",
        "/account/sub-keys",
        "GET",
        page([detail(requests_this_month="7")], total=1),
        "keys[0].requests_this_month",
    ),
    (
        "list",
        "/account/sub-keys",
        "GET",
        page(
            [detail(), {"key": without(key_info(), "created_at"), "requests_this_month": 0}],
            total=2,
        ),
        "keys[1].key.created_at",
    ),
    ("get", SUB_KEY_PATH, "GET", {"key": key_info()}, "requests_this_month"),
    ("get", SUB_KEY_PATH, "GET", detail(requests_this_month=None), "requests_this_month"),
    (
        "get",
        SUB_KEY_PATH,
        "GET",
        {"key": key_info(created_at="2026-03-02 bad"), "requests_this_month": 1},
        "key.created_at",
    ),
    ("update", SUB_KEY_PATH, "PATCH", detail(requests_this_month=1.5), "requests_this_month"),
    ("delete", SUB_KEY_PATH, "DELETE", {"ok": "true"}, "ok"),
    ("delete", SUB_KEY_PATH, "DELETE", {"key_id": CHILD_ID}, "ok"),
    ("delete", SUB_KEY_PATH, "DELETE", {"ok": True, "revoked_at": "soon"}, "revoked_at"),
    ("delete", SUB_KEY_PATH, "DELETE", {"ok": True, "key_id": 17}, "key_id"),
    (
        "reissue",
        SUB_KEY_PATH + "/reissue",
        "POST",
        created(info=without(key_info(), "id")),
        "key_info.id",
    ),
    ("reissue", SUB_KEY_PATH + "/reissue", "POST", {**created(), "key": None}, "key"),
    ("reissue", SUB_KEY_PATH + "/reissue", "POST", {**created(), "key": ""}, "key"),
    ("reissue", SUB_KEY_PATH + "/reissue", "POST", {**created(), "key": 12345}, "key"),
    ("reissue", SUB_KEY_PATH + "/reissue", "POST", without(created(), "key_info"), "key_info"),
]


async def call_route(client: AccountClient, route: str) -> object:
    """Call one sub-key route of `client` with fixed arguments."""
    if route == "list":
        return await client.sub_keys.list()
    if route == "get":
        return await client.sub_keys.get(CHILD_ID)
    if route == "update":
        return await client.sub_keys.update(CHILD_ID, name="x")
    if route == "delete":
        return await client.sub_keys.delete(CHILD_ID)
    assert route == "reissue"
    return await client.sub_keys.reissue(CHILD_ID)


@pytest.mark.parametrize(("route", "path", "method", "body", "field"), BAD_ROUTE_BODIES)
async def test_malformed_sub_key_bodies_name_the_field(
    mock: aioresponses,
    client: AccountClient,
    route: str,
    path: str,
    method: str,
    body: Any,
    field: str,
) -> None:
    """Each sub-key route reports the offending field of a malformed 2xx body. For a
    reissue the answer came back, so the reissue happened: the probe finds the old child
    gone, and `SubKeyLostError` is raised, chained to the malformed body.
    """
    query = {"limit": 25, "offset": 0} if route == "list" else {}
    if route == "reissue":
        mock.get(url(SUB_KEY_PATH), payload=detail())  # the old child, read first
        mock.get(url(SUB_KEY_PATH), status=404, payload={"code": "NOT_FOUND", "detail": "x"})
    mock.add(url(path, **query), method=method, payload=body)

    with pytest.raises(CS2CapError) as caught:
        await call_route(client, route)

    malformed = caught.value.__cause__ if route == "reissue" else caught.value
    assert isinstance(caught.value, SubKeyLostError if route == "reissue" else type(malformed))
    assert isinstance(malformed, MalformedResponseError)
    assert malformed.field == field
    assert len(calls(mock, method, path, **query)) == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json at all", "text/plain"),
        (b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html"),
        (b'{"key": {"id": "0b6f2a52', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
    ],
)
async def test_non_json_2xx_bodies(
    mock: aioresponses, client: AccountClient, body: bytes, content_type: str
) -> None:
    """A 2xx body that is not JSON (HTML, truncated, empty, binary) is a MalformedResponseError."""
    mock.get(url("/account/key"), body=body, content_type=content_type)

    with pytest.raises(MalformedResponseError) as caught:
        await client.get_key()

    error = caught.value
    assert error.field is None
    assert error.status_code == 200
    assert error.content_type == content_type
    assert "expected a JSON body" in str(error)
    assert isinstance(error.__cause__, ValueError)


@pytest.mark.parametrize(
    "body",
    [b"[]", b'[{"key": {}}]', b"null", b"42", b'"key"', b"true"],
)
async def test_json_that_is_not_an_object(
    mock: aioresponses, client: AccountClient, body: bytes
) -> None:
    """A JSON array (or scalar) at the top level is malformed, with no field to blame."""
    mock.get(url("/account/key"), body=body)

    with pytest.raises(MalformedResponseError) as caught:
        await client.get_key()

    assert caught.value.field is None
    assert "expected object" in str(caught.value)


RESPONSE_TYPES: list[type[Any]] = [
    KeyEnvelope,
    ReissuedKey,
    SubKeyPage,
    SubKeyDetail,
    CreatedSubKey,
    RevokedSubKey,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(cl=st.sampled_from(RESPONSE_TYPES), data=json_values)
def test_any_json_gives_a_model_or_malformed_error(cl: type[Any], data: Any) -> None:
    """Whatever JSON arrives, parsing yields the model or MalformedResponseError, nothing else."""
    try:
        result = structure(data, cl)
    except MalformedResponseError:
        return
    assert isinstance(result, cl)


KEY_INFO_FIELDS = [
    field.name for field in attrs.fields(type(structure({"key": key_info()}, KeyEnvelope).key))
]


@settings(max_examples=300)
@given(name=st.sampled_from(KEY_INFO_FIELDS), value=json_values)
def test_one_bad_key_info_field_is_named(name: str, value: Any) -> None:
    """Replacing any one KeyInfo field by arbitrary JSON either parses or names that field."""
    body = {"key": key_info(**{name: value})}
    blamed = None
    try:
        structure(body, KeyEnvelope)
    except MalformedResponseError as error:
        blamed = error.field
    assert blamed in (None, f"key.{name}")


def test_structure_without_status_code() -> None:
    """Parsing outside a response leaves `status_code` unset on the error."""
    with pytest.raises(MalformedResponseError) as caught:
        structure(json.loads("[]"), KeyEnvelope)
    assert caught.value.status_code is None


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (2.5, 2.5), (0, 0.0)])
def test_float_accepts_json_numbers(value: float, expected: float) -> None:
    """The converter reads a JSON number as a float."""
    result = structure(value, float)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize("value", [True, "1.5", None, [1]])
def test_float_refuses_other_json(value: Any) -> None:
    """A boolean, string, null or array is not a number."""
    with pytest.raises(MalformedResponseError, match="expected number"):
        structure(value, float)
