"""No plaintext key in any repr, str, error or log line; `SecretKey` behaves as a value."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback
from typing import Any

import pytest
from aioresponses import aioresponses
from hypothesis import given
from hypothesis import strategies as st

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    AuthenticationError,
    CS2CapError,
    FakeClock,
    MalformedResponseError,
    ReissueOutcomeUnknownError,
    SecretKey,
    SubKeyOutcomeUnknownError,
    UnprocessableEntityError,
    ValidationIssue,
)
from cs2cap_account._secret import BearerHeaders, forget_frames, redact_text

from ._payloads import (
    ALL_SECRETS,
    BASE_URL,
    CHILD_ID,
    CHILD_KEY,
    NEW_ROOT_KEY,
    ROOT_KEY,
    SESSION_JWT,
    created,
    detail,
    error,
    key_info,
    page,
    reissued,
    url,
)


def assert_no_secret(text: str) -> None:
    """`text` holds none of the test's plaintext credentials."""
    for secret in ALL_SECRETS:
        assert secret not in text, f"plaintext credential leaked into {text!r}"


def assert_error_hides_secrets(err: BaseException) -> None:
    """Neither the message, repr, args nor the readable attributes hold a plaintext key."""
    assert_no_secret(str(err))
    assert_no_secret(repr(err))
    assert_no_secret(repr(err.args))
    for name in ("message", "detail", "code"):
        assert_no_secret(repr(getattr(err, name, None)))


# -- SecretKey ------------------------------------------------------------------------


def test_str_and_repr_show_prefix_and_last_four() -> None:
    """`str()`/`repr()` show the type prefix and the last four characters only."""
    key = SecretKey(ROOT_KEY)
    assert str(key) == "sk_live_root_…C1dF"
    assert repr(key) == "SecretKey('sk_live_root_…C1dF')"
    assert f"{key}" == str(key)
    assert key.redacted == str(key)
    assert_no_secret(str(key) + repr(key))


def test_child_key_and_jwt_redaction() -> None:
    """A child key keeps its `sk_live_child_` prefix; a JWT shows only its tail."""
    assert str(SecretKey(CHILD_KEY)) == "sk_live_child_…eR9t"
    assert str(SecretKey(SESSION_JWT)) == "…" + SESSION_JWT[-4:]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("sk_live_root_abc", "sk_live_root_…"),
        ("short", "…"),
        ("sk_live_root_ab12", "sk_live_root_…"),
        ("sk_live_root_0123456789abcde", "sk_live_root_…"),
        ("sk_test_0123456789abcdef", "sk_test_…cdef"),
        ("not-a-cs2cap-key-at-all", "…-all"),
    ],
)
def test_short_keys_show_no_tail(value: str, shown: str) -> None:
    """A secret part under 16 characters shows nothing of itself, not even a tail."""
    assert str(SecretKey(value)) == shown


key_bodies = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=16,
    max_size=48,
)


@given(
    prefix=st.sampled_from(["sk_live_root_", "sk_live_child_", "sk_test_root_"]), body=key_bodies
)
def test_redaction_shows_only_the_type_prefix_and_tail(prefix: str, body: str) -> None:
    """For any random key body, the redacted form is exactly the type prefix, `…` and 4 chars."""
    key = prefix + body
    assert SecretKey(key).redacted == f"{prefix}…{key[-4:]}"


@given(body=key_bodies)
def test_redact_text_hides_any_key_in_free_text(body: str) -> None:
    """A key anywhere in a sentence is replaced by its redacted form."""
    key = "sk_live_root_" + body
    text = redact_text(f"the key '{key}' was revoked")
    assert body[:-4] not in text
    assert text == f"the key '{SecretKey(key).redacted}' was revoked"


@given(
    text=st.text(alphabet="sk_livetroch ABC…0123456789-'", max_size=60),
    body=key_bodies,
)
def test_redact_text_is_idempotent(text: str, body: str) -> None:
    """Redacting already redacted text changes nothing (no `……` from a second pass)."""
    once = redact_text(f"{text} sk_live_root_{body} {text}")
    assert redact_text(once) == once


def test_redact_text_hides_a_jwt() -> None:
    """A session JWT in free text is redacted too."""
    assert_no_secret(redact_text(f"token {SESSION_JWT} expired"))


def test_reveal_returns_the_plaintext() -> None:
    """`reveal()` is the one way to the plaintext."""
    assert SecretKey(ROOT_KEY).reveal() == ROOT_KEY


def test_equality_and_hashing() -> None:
    """Secrets are equal by plaintext, hash alike, and never equal a bare string."""
    a, b, other = SecretKey(ROOT_KEY), SecretKey(ROOT_KEY), SecretKey(NEW_ROOT_KEY)
    assert a == b
    assert a != other
    assert hash(a) == hash(b)
    assert len({a, b, other}) == 2
    assert {a: 1}[b] == 1
    assert a != ROOT_KEY
    assert a.__eq__(ROOT_KEY) is NotImplemented


def test_pickle_and_copy_round_trip() -> None:
    """A secret survives pickling and copying as an equal secret."""
    key = SecretKey(ROOT_KEY)
    unpickled = pickle.loads(pickle.dumps(key))  # noqa: S301 - our own bytes
    for clone in (unpickled, copy.copy(key), copy.deepcopy(key)):
        assert isinstance(clone, SecretKey)
        assert clone == key
        assert clone.reveal() == ROOT_KEY


def test_immutable() -> None:
    """No attribute of a secret can be set, added or deleted."""
    key = SecretKey(ROOT_KEY)
    with pytest.raises(AttributeError):
        key._value = "sk_live_root_other"
    with pytest.raises(AttributeError):
        key.extra = 1
    with pytest.raises(AttributeError):
        del key._value
    assert key.reveal() == ROOT_KEY


@pytest.mark.parametrize("value", ["", " sk_live_root_x", "sk_live_root_x\n", "\t"])
def test_rejects_empty_or_padded(value: str) -> None:
    """An empty key or one with surrounding whitespace is refused."""
    with pytest.raises(ValueError, match="whitespace"):
        SecretKey(value)


def test_rejects_non_strings() -> None:
    """Only a str can be a secret."""
    with pytest.raises(TypeError):
        SecretKey(b"sk_live_root_x")  # type: ignore[arg-type]


# -- models, errors and the client ----------------------------------------------------


async def test_models_never_show_a_key(mock: aioresponses, client: AccountClient) -> None:
    """repr/str of every model the routes return hold no plaintext key."""
    mock.get(url("/account/key"), payload={"key": key_info()}, repeat=True)
    mock.post(url("/account/key/reissue"), payload=reissued())
    mock.get(url("/account/sub-keys", limit=25, offset=0), payload=page([detail()], total=1))
    mock.post(url("/account/sub-keys"), status=201, payload=created())
    mock.get(url(f"/account/sub-keys/{CHILD_ID}"), payload=detail())
    mock.post(url(f"/account/sub-keys/{CHILD_ID}/reissue"), payload=created())
    mock.delete(url(f"/account/sub-keys/{CHILD_ID}"), payload={"ok": True})

    results: list[Any] = [
        await client.get_key(),
        await client.reissue_key(),
        await client.sub_keys.list(),
        await client.sub_keys.create("bot"),
        await client.sub_keys.reissue(CHILD_ID),
        await client.sub_keys.delete(CHILD_ID),
    ]

    assert results[1].key.reveal() == NEW_ROOT_KEY
    assert results[3].key.reveal() == CHILD_KEY
    for result in results:
        assert_no_secret(repr(result))
        assert_no_secret(str(result))


def test_client_repr_hides_the_key() -> None:
    """The client's repr shows the redacted credential, for a key and for a JWT."""
    for client in (
        AccountClient(ROOT_KEY, base_url=BASE_URL),
        AccountClient(session_token=SESSION_JWT, base_url=BASE_URL),
    ):
        assert_no_secret(repr(client))
        assert_no_secret(str(client))
        assert "…" in repr(client)


async def test_401_echoing_the_key_is_redacted(mock: aioresponses, client: AccountClient) -> None:
    """A 401 whose server detail echoes the key holds no plaintext anywhere."""
    mock.get(
        url("/account/key"),
        status=401,
        payload=error("AUTH_INVALID_API_KEY", f"Invalid API key: {ROOT_KEY}"),
    )

    with pytest.raises(AuthenticationError) as caught:
        await client.get_key()

    assert_error_hides_secrets(caught.value)
    assert "sk_live_root_…C1dF" in str(caught.value)


async def test_422_echoing_a_key_is_redacted(mock: aioresponses, client: AccountClient) -> None:
    """Validation issues that quote a key (in `msg` or `input`) are redacted."""
    detail_list: list[dict[str, Any]] = [
        {"type": "x", "loc": ["body", "name"], "msg": f"bad name {CHILD_KEY}"}
    ]
    detail_list[0]["input"] = CHILD_KEY
    mock.post(url("/account/sub-keys"), status=422, payload=error("VALIDATION_ERROR", detail_list))

    with pytest.raises(UnprocessableEntityError) as caught:
        await client.sub_keys.create(CHILD_KEY)

    assert_error_hides_secrets(caught.value)
    assert isinstance(caught.value.detail, tuple)
    assert caught.value.detail[0].input == SecretKey(CHILD_KEY).redacted


async def test_malformed_reissue_body_hides_the_key(
    mock: aioresponses, client: AccountClient
) -> None:
    """A malformed reissue answer that does carry a key does not put it in the error.

    (Without its id the key cannot be salvaged: the answer is unusable.)
    """
    body = {**reissued(), "id": [f"not an id {NEW_ROOT_KEY}"]}
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), payload=body)
    mock.get(url("/account/key"), status=401, payload=error("AUTH_API_KEY_REVOKED", "revoked"))

    with pytest.raises(CS2CapError) as caught:
        await client.reissue_key()

    chain: BaseException | None = caught.value
    while chain is not None:
        assert_error_hides_secrets(chain)
        chain = chain.__cause__ if isinstance(chain, CS2CapError) else None


def test_malformed_error_message_is_redacted() -> None:
    """MalformedResponseError redacts its own message."""
    err = MalformedResponseError(f"odd {ROOT_KEY}", field="key")
    assert_error_hides_secrets(err)


async def test_connection_error_message_is_redacted(
    mock: aioresponses, client: AccountClient
) -> None:
    """An aiohttp error whose text holds a key is redacted in the SDK's error."""
    import aiohttp

    mock.get(
        url("/account/key"), exception=aiohttp.ClientOSError(0, f"reset by {ROOT_KEY}"), repeat=True
    )

    with pytest.raises(APIConnectionError) as caught:
        await client.get_key()

    assert_error_hides_secrets(caught.value)


async def test_logs_never_show_a_key(
    mock: aioresponses, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logging of requests, retries and a reissue never prints a plaintext key."""
    caplog.set_level(logging.DEBUG)
    mock.get(url("/account/key"), status=503, payload=error("DOWN", ROOT_KEY))
    mock.get(url("/account/key"), payload={"key": key_info()}, repeat=True)
    mock.post(url("/account/key/reissue"), status=502, body=b"")
    mock.post(url("/account/key/reissue"), payload=reissued())
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock) as account:
        await account.get_key()
        await account.reissue_key()

    assert caplog.records, "expected the SDK to log something at DEBUG"
    for record in caplog.records:
        assert_no_secret(record.getMessage())


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418, 429, 500, 502, 503, 504])
async def test_every_status_error_redacts_an_echoed_key(
    mock: aioresponses, clock: FakeClock, status: int
) -> None:
    """Whatever the status, a server detail quoting the key never reaches str/repr/detail."""
    mock.get(url("/account/key"), status=status, payload=error("X", f"key {ROOT_KEY} refused"))
    async with AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock, max_retries=0) as c:
        with pytest.raises(CS2CapError) as caught:
            await c.get_key()

    assert_error_hides_secrets(caught.value)
    assert "sk_live_root_…C1dF" in str(caught.value)


async def test_outcome_errors_redact_their_cause(mock: aioresponses, client: AccountClient) -> None:
    """Reissue and create outcome errors quote their cause without its plaintext key."""
    echo = error("UPSTREAM", f"failed for {ROOT_KEY}")
    mock.get(url("/account/key"), payload={"key": key_info()})
    mock.post(url("/account/key/reissue"), status=502, payload=echo)
    mock.get(url("/account/key"), status=401, payload=error("AUTH_ACCOUNT_DISABLED", ROOT_KEY))
    mock.post(url("/account/sub-keys"), status=500, payload=echo)

    with pytest.raises(ReissueOutcomeUnknownError) as unknown:
        await client.reissue_key()
    with pytest.raises(SubKeyOutcomeUnknownError) as maybe:
        await client.sub_keys.create("bot")

    for err in (unknown.value, maybe.value):
        assert_error_hides_secrets(err)
        assert err.__cause__ is not None
        assert_error_hides_secrets(err.__cause__)


def test_a_secret_cannot_be_reinitialised() -> None:
    """Calling __init__ again on an existing SecretKey cannot swap its plaintext."""
    key = SecretKey("sk_live_root_" + "a" * 32)
    with pytest.raises(AttributeError):
        key.__init__("sk_live_root_" + "b" * 32)  # type: ignore[misc]
    assert key.reveal() == "sk_live_root_" + "a" * 32


def test_internal_session_state_does_not_show_the_key() -> None:
    """The session layer's own reprs (credentials, shared state) never hold the plaintext:
    tools that capture local variables record them.
    """
    key = "sk_live_root_" + "Q" * 32
    client = AccountClient(key, base_url="http://127.0.0.1:9/v1")
    assert key not in repr(client._session)
    assert key not in repr(client._session.shared.credentials)


def test_a_key_passed_as_base_url_is_not_echoed() -> None:
    """A key put in CS2C_API_BASE by mistake is redacted in the configuration error."""
    key = "sk_live_root_" + "Q" * 32
    with pytest.raises(ValueError, match="base_url") as caught:
        AccountClient(key, base_url=key)
    assert key not in str(caught.value)


def test_validation_issue_repr_leaves_out_the_echoed_input() -> None:
    """A 422 item's `input` and `ctx` may echo what was sent: kept, but not in the repr."""
    key = "sk_live_root_" + "Q" * 32
    issue = ValidationIssue(type="t", loc=("body",), msg="m", input={"k": key}, ctx={"k": key})
    assert issue.input == {"k": key}
    assert key not in repr(issue)


def test_a_half_built_client_has_a_safe_repr() -> None:
    """A client whose `__init__` raised is shown without failing (reporters that capture
    locals call `repr` on it), and a traceback with captured locals can be formatted.
    """
    with pytest.raises(ValueError, match="base_url") as caught:
        AccountClient(ROOT_KEY, base_url="ftp://example.invalid")
    text = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert "AccountClient(<not initialised>)" in text
    assert ROOT_KEY not in text


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"api_key": ROOT_KEY.encode()}, TypeError),
        ({"session_token": 12345}, TypeError),
        ({"api_key": ""}, ValueError),
    ],
    ids=["bytes key", "int token", "empty key"],
)
def test_credentials_of_the_wrong_kind_are_refused(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """A credential is a non-empty str or a SecretKey; anything else is refused at once,
    with a message that names the argument and not its value.
    """
    with pytest.raises(error) as caught:
        AccountClient(**kwargs)
    assert next(iter(kwargs)) in str(caught.value)
    assert ROOT_KEY not in str(caught.value)


def test_bearer_headers_send_the_plaintext_and_show_it_redacted() -> None:
    """A transport reads `Bearer <plaintext>` from the mapping (any way it reads a
    mapping); `repr()` and `str()` show the credential only redacted; copies, pickles and
    added headers keep it.
    """
    key = SecretKey(ROOT_KEY)
    headers = BearerHeaders(key, {"Accept": "application/json"})
    wanted = {"Authorization": f"Bearer {ROOT_KEY}", "Accept": "application/json"}

    assert dict(headers) == wanted
    assert headers == wanted
    assert dict(headers.items()) == wanted
    assert list(headers.keys()) == list(wanted)
    assert list(headers.values()) == list(wanted.values())
    assert "Authorization" in headers
    assert len(headers) == 2
    for shown in (repr(headers), str(headers), repr([headers])):
        assert ROOT_KEY not in shown
        assert key.redacted in shown
    assert pickle.loads(pickle.dumps(headers)) == headers  # noqa: S301 - our own bytes
    assert copy.deepcopy(headers) == headers
    longer = headers.with_header("Content-Type", "application/json")
    assert longer == {**wanted, "Content-Type": "application/json"}
    assert ROOT_KEY not in repr(longer)


class _Group(Exception):
    """Shaped like an exception group (3.11+): its members in `exceptions`."""

    def __init__(self, *members: BaseException) -> None:
        super().__init__("many")
        self.exceptions = members


def test_forget_frames_detaches_every_traceback_of_the_chain() -> None:
    """The exception, its cause, its context and an exception group's members keep their
    type and message but lose their frames, and so the locals those frames held.
    """

    def fail(secret: str) -> None:
        raise KeyError(len(secret))

    try:
        try:
            fail(ROOT_KEY)
        except KeyError as inner:
            try:
                raise ValueError("v")
            except ValueError as member:
                group = _Group(member)
            try:
                raise group
            except _Group:
                raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        outer = exc

    assert outer.__cause__ is not None and outer.__context__ is not None
    assert forget_frames(outer) is outer
    for link in (outer, outer.__cause__, outer.__context__, *group.exceptions):
        assert link.__traceback__ is None
    assert ROOT_KEY not in "".join(
        traceback.TracebackException.from_exception(outer, capture_locals=True).format()
    )
    assert str(outer) == "outer"


def test_use_key_refuses_none() -> None:
    """`use_key(None)` is a TypeError naming the argument, not an assertion."""
    client = AccountClient(ROOT_KEY)
    with pytest.raises(TypeError, match="api_key"):
        client.use_key(None)  # type: ignore[arg-type]
