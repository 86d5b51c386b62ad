"""Sessions: created lazily, owned or borrowed, shared by `with_options` copies, closed once."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from cs2cap_account import AccountClient, FakeClock, InternalServerError, RateLimitError

from ._payloads import BASE_URL, ROOT_KEY, error, key_info, sent_headers, total_calls, url


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """The aiohttp sessions the SDK creates during the test."""
    made: list[aiohttp.ClientSession] = []
    original = aiohttp.ClientSession

    def counting(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        session = original(*args, **kwargs)
        made.append(session)
        return session

    monkeypatch.setattr(aiohttp, "ClientSession", counting)
    return made


def make(clock: FakeClock, **kwargs: Any) -> AccountClient:
    """A client on the mocked base URL with virtual time."""
    return AccountClient(ROOT_KEY, base_url=BASE_URL, clock=clock, **kwargs)


async def test_session_is_created_on_first_request(
    sessions: list[aiohttp.ClientSession], mock: aioresponses, clock: FakeClock
) -> None:
    """Constructing a client opens nothing; the first request creates one session, reused."""
    mock.get(url("/account/key"), payload={"key": key_info()}, repeat=True)
    client = make(clock)
    assert sessions == []

    await client.get_key()
    await client.get_key()

    assert len(sessions) == 1
    assert not sessions[0].closed
    await client.aclose()
    assert sessions[0].closed


async def test_async_with_closes_the_owned_session(
    sessions: list[aiohttp.ClientSession], mock: aioresponses, clock: FakeClock
) -> None:
    """Leaving `async with` closes the session the client created."""
    mock.get(url("/account/key"), payload={"key": key_info()})

    async with make(clock) as client:
        assert not client.closed
        await client.get_key()

    assert client.closed
    assert sessions[0].closed


async def test_async_with_closes_on_error(
    sessions: list[aiohttp.ClientSession], mock: aioresponses, clock: FakeClock
) -> None:
    """The session is closed even when the body of `async with` raises."""
    mock.get(url("/account/key"), status=500, payload=error("X", "y"))

    with pytest.raises(InternalServerError):
        async with make(clock, max_retries=0) as client:
            await client.get_key()

    assert client.closed
    assert sessions[0].closed


async def test_aclose_is_idempotent(
    sessions: list[aiohttp.ClientSession], clock: FakeClock
) -> None:
    """`aclose()` may be called again; closing an unused client creates no session."""
    client = make(clock)

    await client.aclose()
    await client.aclose()

    assert client.closed
    assert sessions == []


async def test_requests_after_close_are_refused(mock: aioresponses, clock: FakeClock) -> None:
    """A closed client refuses to send instead of reopening a session."""
    client = make(clock)
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.get_key()
    assert total_calls(mock) == 0


async def test_injected_session_is_used_and_never_closed(
    mock: aioresponses, clock: FakeClock
) -> None:
    """An injected aiohttp session carries the requests and stays open after the client closes."""
    mock.get(url("/account/key"), payload={"key": key_info()})
    async with aiohttp.ClientSession(headers={"X-From-Injected": "yes"}) as own:
        async with make(clock, session=own) as client:
            await client.get_key()
        await client.aclose()

        assert not own.closed
        assert client.closed
        assert mock.requests is not None
        (call,) = next(iter(mock.requests.values()))
        assert sent_headers(call)["X-From-Injected"] == "yes"
        assert sent_headers(call)["Authorization"] == f"Bearer {ROOT_KEY}"


async def test_with_options_shares_the_session(
    sessions: list[aiohttp.ClientSession], mock: aioresponses, clock: FakeClock
) -> None:
    """A `with_options` copy uses the same session; closing the copy leaves it open."""
    mock.get(url("/account/key"), payload={"key": key_info()}, repeat=True)
    client = make(clock)
    copy = client.with_options(timeout=5.0, max_retries=0)

    await client.get_key()
    await copy.get_key()
    await copy.aclose()

    assert len(sessions) == 1
    assert not sessions[0].closed
    assert not client.closed
    await client.get_key()

    await client.aclose()
    assert sessions[0].closed
    assert copy.closed


async def test_with_options_changes_only_what_is_given(
    mock: aioresponses, clock: FakeClock
) -> None:
    """A copy with `max_retries=0` gives up at once while the original still retries."""
    mock.get(url("/account/key"), status=503, payload=error("DOWN", "x"), repeat=True)
    async with make(clock, max_retries=2) as client:
        with pytest.raises(InternalServerError):
            await client.with_options(max_retries=0).get_key()
        assert total_calls(mock) == 1

        with pytest.raises(InternalServerError):
            await client.with_options(timeout=1.0).get_key()
        assert total_calls(mock) == 4


async def test_with_options_keeps_unset_settings(mock: aioresponses, clock: FakeClock) -> None:
    """A copy keeps the settings it was not given: no retries stays no retries."""
    mock.get(url("/account/key"), status=503, payload=error("DOWN", "x"), repeat=True)
    async with make(clock, max_retries=0) as client:
        copy = client.with_options()
        with pytest.raises(InternalServerError):
            await copy.get_key()

    assert total_calls(mock) == 1
    assert copy.base_url == client.base_url
    assert copy.api_key == client.api_key
    assert repr(copy) == repr(client)


async def test_with_options_max_retry_wait(mock: aioresponses, clock: FakeClock) -> None:
    """A copy's `max_retry_wait` decides whether a Retry-After is waited out."""
    limited = {"status": 429, "payload": error("RATE_LIMIT_EXCEEDED", "x")}
    mock.get(url("/account/key"), headers={"Retry-After": "5"}, repeat=True, **limited)
    async with make(clock, max_retries=1, max_retry_wait=60.0) as client:
        with pytest.raises(RateLimitError):
            await client.with_options(max_retry_wait=3.0).get_key()
        assert total_calls(mock) == 1
        assert clock.sleeps == []

        with pytest.raises(RateLimitError):
            await client.get_key()
        assert total_calls(mock) == 3
        assert clock.sleeps == [pytest.approx(5.0, abs=0.5)]


async def test_with_options_deadline(mock: aioresponses, clock: FakeClock) -> None:
    """A copy's `deadline` bounds its retries while the original keeps retrying."""
    mock.get(url("/account/key"), status=503, payload=error("DOWN", "x"), repeat=True)
    async with make(clock, max_retries=3) as client:
        with pytest.raises(InternalServerError):
            await client.with_options(deadline=0.01).get_key()
        assert total_calls(mock) == 1

        with pytest.raises(InternalServerError):
            await client.get_key()
        assert total_calls(mock) == 5


async def test_rate_limit_is_shared_with_copies(mock: aioresponses, clock: FakeClock) -> None:
    """`rate_limit` is None before any response and, once seen, the same on every copy."""
    mock.get(
        url("/account/key"),
        payload={"key": key_info()},
        headers={
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "299",
            "X-RateLimit-Tier": "quant",
        },
    )
    mock.get(url("/account/key"), payload={"key": key_info()})
    async with make(clock) as client:
        copy = client.with_options(max_retries=0)
        assert client.rate_limit is None

        await copy.get_key()
        assert client.rate_limit is not None
        assert client.rate_limit.remaining == 299
        assert client.rate_limit.tier == "quant"

        await client.get_key()
        assert copy.rate_limit is not None
        assert copy.rate_limit.remaining == 299, "a response without the headers keeps the last"
