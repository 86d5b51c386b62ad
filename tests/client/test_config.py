"""Where the key and base URL come from, and which base URLs are refused."""

from __future__ import annotations

import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock, SecretKey
from cs2cap_account._client import DEFAULT_BASE_URL

from ._payloads import BASE_URL, NEW_ROOT_KEY, ROOT_KEY, SESSION_JWT, key_info, sent_headers

ENV_BASE = "https://env.cs2c.test/v1"


def test_default_base_url() -> None:
    """Without argument or environment, the client talks to the public API."""
    assert DEFAULT_BASE_URL == "https://api.cs2c.app/v1"
    assert AccountClient(ROOT_KEY).base_url == DEFAULT_BASE_URL


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`CS2C_API_BASE` is used when no base_url is passed; an argument wins over it."""
    monkeypatch.setenv("CS2C_API_BASE", ENV_BASE)
    assert AccountClient(ROOT_KEY).base_url == ENV_BASE
    assert AccountClient(ROOT_KEY, base_url=BASE_URL).base_url == BASE_URL


def test_empty_base_url_env_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty `CS2C_API_BASE` counts as unset."""
    monkeypatch.setenv("CS2C_API_BASE", "")
    assert AccountClient(ROOT_KEY).base_url == DEFAULT_BASE_URL


def test_trailing_slash_is_dropped() -> None:
    """`base_url` is kept without a trailing slash, so paths join cleanly."""
    assert AccountClient(ROOT_KEY, base_url=BASE_URL + "/").base_url == BASE_URL


async def test_api_key_from_environment(
    monkeypatch: pytest.MonkeyPatch, mock: aioresponses, clock: FakeClock
) -> None:
    """With no api_key argument the key comes from `CS2C_API_KEY` and is sent as the bearer."""
    monkeypatch.setenv("CS2C_API_KEY", ROOT_KEY)
    monkeypatch.setenv("CS2C_API_BASE", ENV_BASE)
    mock.get(ENV_BASE + "/account/key", payload={"key": key_info()})

    async with AccountClient(clock=clock) as client:
        assert client.api_key == SecretKey(ROOT_KEY)
        await client.get_key()

    assert mock.requests is not None
    (call,) = next(iter(mock.requests.values()))
    assert sent_headers(call)["Authorization"] == f"Bearer {ROOT_KEY}"


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit api_key is used even when `CS2C_API_KEY` is set."""
    monkeypatch.setenv("CS2C_API_KEY", ROOT_KEY)
    assert AccountClient(NEW_ROOT_KEY).api_key == SecretKey(NEW_ROOT_KEY)


def test_secret_key_argument_is_kept() -> None:
    """A SecretKey passed in is used as it is."""
    key = SecretKey(ROOT_KEY)
    assert AccountClient(key).api_key is key


async def test_explicit_session_token_beats_environment_key(
    monkeypatch: pytest.MonkeyPatch, mock: aioresponses, clock: FakeClock
) -> None:
    """`AccountClient(session_token=jwt)` sends the JWT even if `CS2C_API_KEY` holds a key.

    This is the documented recovery path after a lost reissue, when the key in the
    environment is the revoked one.
    """
    monkeypatch.setenv("CS2C_API_KEY", ROOT_KEY)
    mock.get(BASE_URL + "/account/key", payload={"key": key_info()})

    async with AccountClient(session_token=SESSION_JWT, base_url=BASE_URL, clock=clock) as c:
        assert c.api_key is None
        await c.get_key()

    assert mock.requests is not None
    (call,) = next(iter(mock.requests.values()))
    assert sent_headers(call)["Authorization"] == f"Bearer {SESSION_JWT}"


@pytest.mark.parametrize("env", [None, ""])
def test_no_credential_is_refused(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    """Without key, env var or session token: ValueError naming `CS2C_API_KEY`."""
    if env is not None:
        monkeypatch.setenv("CS2C_API_KEY", env)
    with pytest.raises(ValueError, match="CS2C_API_KEY"):
        AccountClient()


def test_padded_key_is_refused() -> None:
    """A key with surrounding whitespace (a stray newline) is refused, not sent."""
    with pytest.raises(ValueError, match="whitespace"):
        AccountClient(ROOT_KEY + "\n")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.cs2c.app/v1",
        "http://10.0.0.5:8080/v1",
        "http://localhost.evil.example/v1",
        "http://127.0.0.1.nip.io/v1",
    ],
)
def test_plain_http_to_remote_hosts_is_refused(base_url: str) -> None:
    """`http://` to a non-loopback host raises ValueError unless explicitly allowed."""
    with pytest.raises(ValueError, match="allow_insecure_http"):
        AccountClient(ROOT_KEY, base_url=base_url)
    assert AccountClient(ROOT_KEY, base_url=base_url, allow_insecure_http=True).base_url == (
        base_url
    )


def test_insecure_env_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The http check applies to `CS2C_API_BASE` too."""
    monkeypatch.setenv("CS2C_API_BASE", "http://api.cs2c.app/v1")
    with pytest.raises(ValueError, match="plain http"):
        AccountClient(ROOT_KEY)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/v1",
        "http://127.1.2.3/v1",
        "http://[::1]:9000/v1",
        "http://localhost:8080/v1",
        "http://LOCALHOST/v1",
        "http://api.localhost/v1",
    ],
)
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    """Loopback hosts (127.0.0.0/8, ::1, localhost) need no flag, so local fakes just work."""
    assert AccountClient(ROOT_KEY, base_url=base_url).base_url == base_url


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://api.cs2c.app/v1",
        "api.cs2c.app/v1",
        "https:///v1",
        "https://user:pass@api.cs2c.app/v1",
        "https://api.cs2c.app/v1?key=x",
        "https://api.cs2c.app/v1#frag",
    ],
)
def test_malformed_base_urls_are_refused(base_url: str) -> None:
    """Only http(s) URLs with a host and no credentials, query or fragment are accepted."""
    with pytest.raises(ValueError, match="base_url"):
        AccountClient(ROOT_KEY, base_url=base_url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": -1.0},
        {"max_retries": -1},
        {"deadline": 0},
        {"max_retry_wait": -1.0},
        {"requests_per_minute": -5},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Non-positive timeouts, negative retries or a negative rate raise ValueError."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AccountClient(ROOT_KEY, **kwargs)  # type: ignore[arg-type]


def test_with_options_validates_too() -> None:
    """A `with_options` copy checks its settings like the constructor."""
    client = AccountClient(ROOT_KEY)
    with pytest.raises(ValueError, match="timeout"):
        client.with_options(timeout=0)
