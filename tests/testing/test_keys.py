"""The fake's account and root-key rules: authentication, reissue, helpers."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from cs2cap_account import FakeClock, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http, MakeFake

ROOT_KEY = re.compile(r"^sk_live_root_[A-Za-z0-9_-]{32}$")
CHILD_KEY = re.compile(r"^sk_live_child_[A-Za-z0-9_-]{32}$")
FRACTIONAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$")
WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_keys_ids_and_timestamps_have_the_api_shapes(api: FakeCS2CapAPI, http: Http) -> None:
    """Keys are prefix + 32 URL-safe chars, ids uuid4, timestamps UTC `Z` in both forms."""
    child = api.add_child_key("bot")
    assert ROOT_KEY.match(api.root_key.reveal())
    assert CHILD_KEY.match(child.key.reveal())
    assert uuid.UUID(api.root_key_id).version == 4
    info = (await http.get("/account/key", token=api.root_key)).json["key"]
    assert FRACTIONAL.match(info["created_at"])
    assert WHOLE_SECONDS.match(info["last_used_at"])
    assert info["expires_at"] is None


async def test_missing_or_malformed_authorization_is_unauthorized(http: Http) -> None:
    """No header, or not a bearer token: 401 UNAUTHORIZED."""
    assert (await http.get("/account/key")).code == "UNAUTHORIZED"
    reply = await http.request("GET", "/account/key", token=None)
    assert reply.status == 401
    response = await http.request("GET", "/account/key", headers={"Authorization": "Basic abc"})
    assert response.status == 401
    assert response.json["code"] == "UNAUTHORIZED"


async def test_unknown_key_is_invalid(http: Http) -> None:
    """A key the fake never issued: 401 AUTH_INVALID_API_KEY."""
    reply = await http.get("/account/key", token="sk_live_root_" + "x" * 32)
    assert (reply.status, reply.code) == (401, "AUTH_INVALID_API_KEY")


async def test_session_token_describes_the_active_root_key(api: FakeCS2CapAPI, http: Http) -> None:
    """`GET /account/key` with the session JWT returns the active root key's KeyInfo."""
    info = (await http.get("/account/key", token=api.session_token)).json["key"]
    assert info["id"] == info["root_key_id"] == api.root_key_id
    assert info["key_prefix"] == "sk_live_root"
    assert info["is_root_key"] is True
    assert info["is_active"] is True
    assert info["last_used_at"] is None  # the session, not the key, made the call
    assert info["effective_rate_requests_per_minute"] == 300
    assert info["effective_quota_requests_per_month"] == 1_000_000


async def test_child_key_describes_itself(api: FakeCS2CapAPI, http: Http) -> None:
    """`GET /account/key` with a child key returns the child's own KeyInfo."""
    child = api.add_child_key("reader", rate_requests_per_minute_override=7)
    info = (await http.get("/account/key", token=child.key)).json["key"]
    assert info["id"] == child.key_id
    assert info["root_key_id"] == api.root_key_id
    assert info["is_root_key"] is False
    assert info["key_prefix"] == "sk_live_child"
    assert info["name"] == "reader"
    assert info["rate_requests_per_minute_override"] == 7
    assert info["effective_rate_requests_per_minute"] == 7


@pytest.mark.parametrize("credential", ["root", "session"])
async def test_reissue_revokes_the_old_root_and_every_child(
    api: FakeCS2CapAPI, http: Http, credential: str
) -> None:
    """After a reissue the new key works; the old root and all children get 401 REVOKED."""
    old_root, old_id = api.root_key, api.root_key_id
    children = [api.add_child_key(f"c{n}") for n in range(3)]
    token = old_root if credential == "root" else api.session_token
    reply = await http.post("/account/key/reissue", token=token)
    assert reply.status == 200
    new_key = SecretKey(reply.json["key"])
    assert ROOT_KEY.match(new_key.reveal())
    assert reply.json["key_prefix"] == "sk_live_root"
    assert reply.json["id"] == api.root_key_id != old_id
    assert api.root_key == new_key
    assert api.reissues == 1
    for revoked in (old_root, *(child.key for child in children)):
        gone = await http.get("/account/key", token=revoked)
        assert (gone.status, gone.code) == (401, "AUTH_API_KEY_REVOKED")
        assert not api.is_active(revoked)
    assert (await http.get("/account/key", token=new_key)).status == 200
    assert (await http.get("/account/key", token=api.session_token)).json["key"]["id"] == (
        api.root_key_id
    )
    assert api.key_info(old_id)["is_active"] is False


async def test_reissue_needs_a_verified_email(api: FakeCS2CapAPI, http: Http) -> None:
    """Unverified email: reissue answers 403 and changes nothing."""
    api.set_email_verified(False)
    assert not api.email_verified
    reply = await http.post("/account/key/reissue", token=api.root_key)
    assert (reply.status, reply.code) == (403, "FORBIDDEN")
    assert api.reissues == 0
    assert api.is_active(api.root_key)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/account/key/reissue"),
        ("GET", "/account/sub-keys"),
        ("POST", "/account/sub-keys"),
        ("GET", "/account/sub-keys/{id}"),
        ("PATCH", "/account/sub-keys/{id}"),
        ("DELETE", "/account/sub-keys/{id}"),
        ("POST", "/account/sub-keys/{id}/reissue"),
    ],
)
async def test_child_keys_cannot_manage_keys(
    api: FakeCS2CapAPI, http: Http, method: str, path: str
) -> None:
    """Every key-management route refuses a child key with 403 FORBIDDEN, changing nothing."""
    child = api.add_child_key("worker")
    reply = await http.request(
        method, path.format(id=child.key_id), token=child.key, json={"name": "x"}
    )
    assert (reply.status, reply.code) == (403, "FORBIDDEN")
    assert api.is_active(child.key)
    assert api.reissues == 0


async def test_an_expired_root_key_stops_authenticating(
    api: FakeCS2CapAPI, http: Http, clock: FakeClock
) -> None:
    """Once `expires_at` passes, the key gets 401 and reads as inactive."""
    expiry = clock.now() + timedelta(hours=1)
    api.set_root_expires_at(expiry)
    info = (await http.get("/account/key", token=api.root_key)).json["key"]
    assert info["expires_at"] == expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    clock.advance(3600)
    reply = await http.get("/account/key", token=api.root_key)
    assert (reply.status, reply.code) == (401, "AUTH_API_KEY_EXPIRED")
    assert not api.is_active(api.root_key)
    via_session = (await http.get("/account/key", token=api.session_token)).json["key"]
    assert via_session["is_active"] is False
    api.set_root_expires_at(None)
    assert api.is_active(api.root_key)


async def test_aging_the_root_key_moves_created_at(
    api: FakeCS2CapAPI, http: Http, clock: FakeClock
) -> None:
    """`age_root_key` and `set_root_created_at` set the `created_at` clients schedule from."""
    api.age_root_key(timedelta(days=90))
    created = (await http.get("/account/key", token=api.root_key)).json["key"]["created_at"]
    expected = clock.now() - timedelta(days=90)
    assert datetime.fromisoformat(created.replace("Z", "+00:00")) == expected
    moment = datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=timezone.utc)
    api.set_root_created_at(moment)
    assert api.key_info()["created_at"] == "2025-01-02T03:04:05.600000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        api.set_root_created_at(datetime(2025, 1, 1))


async def test_given_keys_and_tier_are_used(make_fake: MakeFake) -> None:
    """`root_key=`, `session_token=` and `tier=` set up the account as given."""
    root = "sk_live_root_" + "A" * 32
    api = await make_fake(root_key=SecretKey(root), session_token="eyJ.session.token", tier="pro")
    assert api.root_key.reveal() == root
    assert api.session_token.reveal() == "eyJ.session.token"
    assert api.tier == "pro"
    assert api.is_active(root)
    assert api.is_active("eyJ.session.token")
    assert not api.is_active("sk_live_root_other")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tier": "gold"},
        {"root_key": "sk_live_child_" + "a" * 32},
        {"root_key": "sk_live_root_" + "a" * 32, "session_token": "sk_live_root_" + "a" * 32},
        {"rate_window": 0},
    ],
)
def test_bad_constructor_arguments_are_refused(kwargs: dict[str, object]) -> None:
    """Unknown tiers, non-root keys, a token equal to the key and a zero window raise."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        FakeCS2CapAPI(**kwargs)  # type: ignore[arg-type]


async def test_lifecycle_errors_are_clear(make_fake: MakeFake) -> None:
    """Reading the URL before start, or starting twice, raises RuntimeError; close is idempotent."""
    idle = FakeCS2CapAPI()
    with pytest.raises(RuntimeError, match="not running"):
        _ = idle.base_url
    api = await make_fake(start=True)
    with pytest.raises(RuntimeError, match="already running"):
        await api.start()
    await api.close()
    await api.close()


async def test_helpers_reject_unknown_ids_and_the_26th_child(api: FakeCS2CapAPI) -> None:
    """`key_info`/`record_usage` need a known id; `add_child_key` keeps the 25-key limit."""
    with pytest.raises(KeyError):
        api.key_info(str(uuid.uuid4()))
    for index in range(25):
        api.add_child_key(f"k{index}")
    with pytest.raises(ValueError, match="25"):
        api.add_child_key("one too many")


async def test_every_response_carries_rate_limit_headers(api: FakeCS2CapAPI, http: Http) -> None:
    """Successes, 401s and unknown paths all carry `X-RateLimit-*`."""
    replies = [
        await http.get("/account/key", token=api.root_key),
        await http.get("/account/key"),
        await http.get("/account/nowhere", token=api.root_key),
        await http.request("PUT", "/account/key", token=api.root_key),
    ]
    assert [reply.status for reply in replies] == [200, 401, 404, 405]
    for reply in replies:
        assert reply.headers["X-RateLimit-Tier"] == "quant"
        assert reply.headers["X-RateLimit-Limit"] == "300"
        assert int(reply.headers["X-RateLimit-Remaining"]) <= 300
        assert int(reply.headers["X-RateLimit-Reset"]) >= 0
    assert replies[2].code == "NOT_FOUND"
    assert replies[3].code == "METHOD_NOT_ALLOWED"


async def test_no_plaintext_key_reaches_logs_or_reprs(
    api: FakeCS2CapAPI, tcp_http: Http, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing the fake logs or prints about itself contains a plaintext key or token."""
    # Over TCP: the server's own logging of a dropped connection is audited too.
    caplog.set_level(logging.DEBUG)
    child = api.add_child_key("bot")
    old = api.root_key
    await tcp_http.get("/account/key", token=child.key)
    await tcp_http.post("/account/key/reissue", token=old)
    await tcp_http.get("/account/key", token=old)
    api.faults.drop_after_commit("get_key", times=2)
    secrets = [old, api.root_key, child.key, api.session_token]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await tcp_http.get("/account/key", token=api.root_key)
    shown = caplog.text + repr(api) + repr(api.faults) + str(api.key_info())
    for secret in secrets:
        assert secret.reveal() not in shown
