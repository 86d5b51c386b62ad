"""Every body the fake sends validates against the published Account API schemas.

`tests/schemas/cs2cap-openapi-account-keys.json` is a verbatim extract of the published
OpenAPI spec (the sub-key routes and their components); the two root-key routes, which the
spec leaves out, are described in `cs2cap-account-root-key-routes.json` from the docs.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http, MakeFake, Reply

SCHEMA_DIR = Path(__file__).parent.parent / "schemas"
SPEC_FILES = ("cs2cap-openapi-account-keys.json", "cs2cap-account-root-key-routes.json")
BASE_URI = "https://schemas.cs2cap.test/"
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _load(name: str) -> dict[str, Any]:
    document = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


SPECS = {name: _load(name) for name in SPEC_FILES}
REGISTRY: Registry[Any] = Registry().with_resources(
    (BASE_URI + name, Resource.from_contents(doc, default_specification=DRAFT202012))
    for name, doc in SPECS.items()
)
FORMATS = jsonschema.FormatChecker()


def _is_timestamp(value: object) -> bool:
    """An ISO 8601 timestamp with an explicit UTC offset or `Z`."""
    if not isinstance(value, str):
        return True
    if not _TIMESTAMP.match(value):
        return False
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


FORMATS.checks("date-time", raises=ValueError)(_is_timestamp)


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def schema_for(method: str, template: str, status: int) -> dict[str, Any]:
    """The schema the docs give for `method template` answering `status`.

    Statuses a route's spec does not list (404, 409, and 422 on the root-key routes) use
    the spec's shared `ErrorResponse` / `ValidationErrorResponse`.
    """
    for name, spec in SPECS.items():
        operation = spec["paths"].get(template, {}).get(method.lower())
        if operation is None:
            continue
        if str(status) in operation["responses"]:
            pointer = _pointer(
                "paths",
                template,
                method.lower(),
                "responses",
                str(status),
                "content",
                "application/json",
                "schema",
            )
            return {"$ref": BASE_URI + name + "#" + quote(pointer)}
        shared = "ValidationErrorResponse" if status == 422 else "ErrorResponse"
        return {"$ref": f"{BASE_URI}{SPEC_FILES[0]}#/components/schemas/{shared}"}
    raise AssertionError(f"no schema for {method} {template}")


def assert_valid(method: str, template: str, reply: Reply) -> None:
    """Validate `reply`'s body and its rate-limit headers."""
    validator = jsonschema.Draft202012Validator(
        schema_for(method, template, reply.status), registry=REGISTRY, format_checker=FORMATS
    )
    errors = [error.message for error in validator.iter_errors(reply.json)]
    assert not errors, f"{method} {template} -> {reply.status}: {errors}"
    for header in _RATE_HEADERS:
        assert int(reply.headers[header]) >= 0, header
    assert reply.headers["X-RateLimit-Tier"] in {"free", "starter", "pro", "quant"}
    if reply.status == 429 and reply.json["code"] == "RATE_LIMIT_EXCEEDED":
        assert int(reply.headers["Retry-After"]) >= 1


async def test_every_route_and_status_matches_the_published_schemas(
    api: FakeCS2CapAPI, http: Http, make_fake: MakeFake
) -> None:
    """Walk all eight routes through success and every error status; validate each body."""
    seen: list[tuple[str, str, Reply]] = []
    root, session = api.root_key, api.session_token
    one = "/v1/account/sub-keys/{key_id}"

    async def call(method: str, template: str, token: Any = None, **kwargs: Any) -> Reply:
        path = template.removeprefix("/v1").format(key_id=kwargs.pop("key_id", ""))
        reply = await http.request(method, path, token=token, **kwargs)
        seen.append((method, template, reply))
        return reply

    # GET /account/key: 200 with root, session and child; the 401 variants.
    child = api.add_child_key("reader")
    for token in (root, session, child.key):
        assert (await call("GET", "/v1/account/key", token)).status == 200
    assert (await call("GET", "/v1/account/key")).code == "UNAUTHORIZED"
    assert (await call("GET", "/v1/account/key", "sk_live_root_nope")).code == (
        "AUTH_INVALID_API_KEY"
    )

    # Sub-key routes: 201/200, 404, 409, 422, 403 for a child key.
    created = await call("POST", "/v1/account/sub-keys", root, json={"name": "bot"})
    assert created.status == 201
    key_id = created.json["key_info"]["id"]
    assert (await call("GET", "/v1/account/sub-keys", root, params={"limit": "1"})).status == 200
    assert (await call("GET", "/v1/account/sub-keys", session)).status == 200
    assert (await call("GET", one, root, key_id=key_id)).status == 200
    patch = {"name": "bot-2", "rate_requests_per_minute_override": 5}
    assert (await call("PATCH", one, root, key_id=key_id, json=patch)).status == 200
    assert (await call("POST", one + "/reissue", root, key_id=child.key_id)).status == 200
    assert (await call("DELETE", one, root, key_id=key_id)).status == 200
    missing = str(uuid.uuid4())
    for method, template in (("GET", one), ("DELETE", one), ("POST", one + "/reissue")):
        assert (await call(method, template, root, key_id=missing)).status == 404
    assert (await call("PATCH", one, root, key_id=missing, json={})).status == 404
    assert (await call("GET", one, root, key_id="not-a-uuid")).status == 422
    assert (await call("PATCH", one, root, key_id=key_id, json={"name": ""})).status == 422
    assert (await call("GET", "/v1/account/sub-keys", root, params={"limit": "x"})).status == 422
    assert (await call("POST", "/v1/account/sub-keys", root, json={})).status == 422
    assert (await call("POST", "/v1/account/sub-keys", root, data=b"{no")).status == 422
    assert (await call("POST", "/v1/account/key/reissue", child.key)).status == 401
    live_child = api.add_child_key("child")
    for method, template in (("GET", "/v1/account/sub-keys"), ("POST", "/v1/account/key/reissue")):
        assert (await call(method, template, live_child.key)).status == 403
    # 429: a per-minute refusal and an injected monthly-quota refusal.
    slow = api.add_child_key("slow", rate_requests_per_minute_override=1)
    assert (await call("GET", "/v1/account/key", slow.key)).status == 200
    assert (await call("GET", "/v1/account/key", slow.key)).code == "RATE_LIMIT_EXCEEDED"
    api.faults.monthly_quota_exceeded("list_sub_keys")
    assert (await call("GET", "/v1/account/sub-keys", root)).status == 429

    # 409: three children are active (reader's reissue, child, slow); fill up to 25.
    for index in range(22):
        api.add_child_key(f"filler-{index}")
    assert (await call("POST", "/v1/account/sub-keys", root, json={"name": "26th"})).status == 409

    # 403 on reissue with an unverified email; then a real reissue revokes the old key.
    api.set_email_verified(False)
    assert (await call("POST", "/v1/account/key/reissue", session)).status == 403
    api.set_email_verified(True)
    assert (await call("POST", "/v1/account/key/reissue", root)).status == 200
    assert (await call("GET", "/v1/account/key", root)).code == "AUTH_API_KEY_REVOKED"

    # 403 for a tier that cannot hold child keys.
    pro = await make_fake(tier="pro")
    async with Http.open(pro) as http_for_pro:
        reply = await http_for_pro.post("/account/sub-keys", token=pro.root_key, json={"name": "x"})
    seen.append(("POST", "/v1/account/sub-keys", reply))
    assert reply.status == 403

    for method, template, reply in seen:
        assert_valid(method, template, reply)
    covered = {reply.status for _, _, reply in seen}
    assert covered >= {200, 201, 401, 403, 404, 409, 422, 429}
    codes_401 = {reply.json["code"] for _, _, reply in seen if reply.status == 401}
    assert codes_401 == {"UNAUTHORIZED", "AUTH_INVALID_API_KEY", "AUTH_API_KEY_REVOKED"}


@pytest.mark.parametrize("name", SPEC_FILES)
def test_schema_copies_are_openapi_documents(name: str) -> None:
    """The stored schema files keep the OpenAPI layout the lookup above relies on."""
    spec = SPECS[name]
    assert spec["openapi"].startswith("3.1")
    assert all(path.startswith("/v1/account/") for path in spec["paths"])
