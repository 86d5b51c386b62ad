"""The root-key reissue under every way its request can fail, against the stateful fake.

The fake really changes state: a reissue revokes the old root key and issues a new one,
and its fault injection drops a request before the handler runs (nothing happened) or
after it (the reissue happened and its response is lost). `api.reissues` counts the
reissues that took effect; `api.requests` counts what reached the server.

Clients reach the fake in-process; the tests that refuse a connection (which only a
socket can do) start it and go through a resolver that can point at a closed port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    FakeClock,
    Hooks,
    KeyLostError,
    PermissionDeniedError,
    ReissueOutcomeUnknownError,
    RequestEvent,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account.testing import FakeCS2CapAPI, Fault, FaultKind

from ._support import SwitchableResolver

MakeApiClient = Callable[..., AccountClient]

# A scripted fault that changes nothing, to let one request through ahead of others.
PASS_THROUGH = Fault(FaultKind.DELAY, status=200, delay=0.0)


@pytest.fixture
async def api(clock: FakeClock) -> AsyncIterator[FakeCS2CapAPI]:
    """The fake on the test's virtual clock (quant tier, so child keys can be created);
    not started unless a test asks for `resolver_session`.
    """
    fake = FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now)
    yield fake
    await fake.close()


@pytest.fixture
async def make_api_client(api: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[MakeApiClient]:
    """Clients of the fake on the virtual clock; the root key unless told otherwise.

    In-process (the default base URL, whose host is never resolved) unless given an
    aiohttp `session` and the started fake's `base_url`.
    """
    made: list[AccountClient] = []

    def make(**kwargs: Any) -> AccountClient:
        if "session" not in kwargs:
            kwargs.setdefault("transport", api.transport(clock=clock))
        if "session_token" not in kwargs:
            kwargs.setdefault("api_key", api.root_key)
        kwargs.setdefault("clock", clock)
        client = AccountClient(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def resolver_session(
    api: FakeCS2CapAPI,
) -> AsyncIterator[tuple[SwitchableResolver, aiohttp.ClientSession]]:
    """An aiohttp session whose every request opens a new connection through a resolver
    the test can switch to a closed port, to refuse chosen attempts. Starts the fake: the
    fake cannot refuse a connection in-process.
    """
    await api.start()
    resolver = SwitchableResolver(api.port)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield resolver, session


def localhost_url(api: FakeCS2CapAPI) -> str:
    """The fake's base URL by host name, so the resolver is asked (IP literals skip it)."""
    return f"http://localhost:{api.port}/v1"


async def assert_works(api: FakeCS2CapAPI, client: AccountClient, key_id: str) -> None:
    """The client's key is the fake's active root key, and a real request with it works."""
    assert client.api_key is not None
    assert api.is_active(client.api_key)
    assert api.root_key_id == key_id
    assert (await client.get_key()).id == key_id


async def test_a_refused_connection_is_retried_without_a_probe(
    api: FakeCS2CapAPI,
    make_api_client: MakeApiClient,
    resolver_session: tuple[SwitchableResolver, aiohttp.ClientSession],
) -> None:
    """A refused connection proves the POST never reached the server: it is sent again
    at once (no probe), and exactly one reissue happens.
    """
    resolver, session = resolver_session
    old_key, old_id = api.root_key, api.root_key_id

    def refuse_first_post(event: RequestEvent) -> None:
        if event.method == "POST" and event.attempt == 1:
            resolver.refuse = 1

    client = make_api_client(
        base_url=localhost_url(api), session=session, hooks=Hooks(on_request=[refuse_first_post])
    )

    new = await client.reissue_key()

    assert resolver.refused == 1
    assert api.reissues == 1
    assert api.requests["reissue_key"] == 1
    assert api.requests["get_key"] == 1  # the id read before the POST; no probe
    assert new.id != old_id
    assert not api.is_active(old_key)
    await assert_works(api, client, new.id)


async def test_a_drop_before_the_server_acts_is_probed_then_retried(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """The connection drops before the reissue runs: the probe (GET with the old key)
    finds the same key still active, so the POST is sent again; exactly one reissue.
    """
    api.faults.drop("reissue_key")
    old_key, old_id = api.root_key, api.root_key_id
    client = make_api_client()

    new = await client.reissue_key()

    assert api.requests["reissue_key"] == 2
    assert api.requests["get_key"] == 2  # before, and the probe
    assert api.reissues == 1
    assert new.id != old_id
    assert not api.is_active(old_key)
    await assert_works(api, client, new.id)


async def test_a_drop_after_the_server_acted_raises_key_lost(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """The reissue happens and its response is lost: the probe gets 401 for the old key,
    so `KeyLostError` names the old key id and says a session JWT can recover. The POST
    is not sent again.
    """
    api.faults.drop_after_commit("reissue_key")
    old_key, old_id = api.root_key, api.root_key_id
    client = make_api_client()

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    assert caught.value.previous_key_id == old_id
    assert "session JWT" in str(caught.value)
    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert api.reissues == 1
    assert api.requests["reissue_key"] == 1
    assert not api.is_active(old_key)
    assert client.api_key == old_key  # never switched to a key it does not have


async def test_key_lost_is_recoverable_with_a_session_jwt(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """What `KeyLostError` advises works: reissuing with the session JWT revokes only the
    lost key and returns a working one.
    """
    api.faults.drop_after_commit("reissue_key")
    with pytest.raises(KeyLostError):
        await make_api_client().reissue_key()
    lost_id = api.root_key_id

    rescuer = make_api_client(session_token=api.session_token)
    new = await rescuer.reissue_key()

    assert new.id != lost_id
    assert api.reissues == 2
    await assert_works(api, rescuer, new.id)


@pytest.mark.parametrize("how", ["dropped", "refused"])
async def test_an_unreachable_probe_raises_outcome_unknown(
    api: FakeCS2CapAPI,
    make_api_client: MakeApiClient,
    resolver_session: tuple[SwitchableResolver, aiohttp.ClientSession],
    how: str,
) -> None:
    """The reissue's response is lost and the probe cannot reach the server either.

    Every probe connection is dropped, or refused: `ReissueOutcomeUnknownError`, and the
    POST is not repeated.
    """
    resolver, session = resolver_session
    api.faults.drop_after_commit("reissue_key")
    posted = False

    def refuse_gets_after_the_post(event: RequestEvent) -> None:
        nonlocal posted
        posted = posted or event.method == "POST"
        if posted and event.method == "GET":
            resolver.refuse = 1

    hooks = Hooks()
    if how == "dropped":
        api.faults.add("get_key", PASS_THROUGH)  # the id read before the POST
        api.faults.drop("get_key", times=20)  # every probe
    else:
        hooks = Hooks(on_request=[refuse_gets_after_the_post])
    client = make_api_client(base_url=localhost_url(api), session=session, hooks=hooks)

    with pytest.raises(ReissueOutcomeUnknownError) as caught:
        await client.reissue_key()

    # Not a connection error itself (the outcome, not the connection, is the news); the
    # probe's connection error is its cause.
    assert not isinstance(caught.value, APIConnectionError)
    assert isinstance(caught.value.cause, APIConnectionError)
    assert caught.value.__cause__ is not None
    assert "get_key() using the old key" in str(caught.value)
    assert api.reissues == 1
    assert api.requests["reissue_key"] == 1
    if how == "refused":
        assert resolver.refused == 3  # the probe tried max_retries + 1 times
    else:
        assert api.requests["get_key"] >= 1 + 3


async def test_a_probe_answered_with_503s_raises_outcome_unknown(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """A probe that keeps getting 503 cannot tell: `ReissueOutcomeUnknownError`."""
    client = make_api_client()
    api.faults.add("get_key", PASS_THROUGH)
    api.faults.drop("reissue_key")
    api.faults.fail("get_key", status=503, times=10)

    with pytest.raises(ReissueOutcomeUnknownError) as caught:
        await client.reissue_key()

    assert isinstance(caught.value.__cause__, APIConnectionError)
    assert api.reissues == 0
    assert api.requests["reissue_key"] == 1


@pytest.mark.parametrize("fault", ["503", "html_502"])
async def test_an_error_answer_where_nothing_happened_is_probed_then_retried(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient, fault: str
) -> None:
    """A 503 or an HTML 502 page may or may not mean the reissue ran; the probe finds the
    old key active, so it is retried, and exactly one reissue happens.
    """
    if fault == "503":
        api.faults.fail("reissue_key", status=503)
    else:
        api.faults.html_502("reissue_key")
    client = make_api_client()

    new = await client.reissue_key()

    assert api.requests["reissue_key"] == 2
    assert api.reissues == 1
    await assert_works(api, client, new.id)


async def test_a_garbled_success_body_raises_key_lost(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """A 200 whose JSON is cut short: the reissue happened, the key is unreadable, so
    `KeyLostError` (not a retry that would revoke the unread key).
    """
    api.faults.truncated_json("reissue_key")
    old_id = api.root_key_id
    client = make_api_client()

    with pytest.raises(KeyLostError) as caught:
        await client.reissue_key()

    assert caught.value.previous_key_id == old_id
    assert api.reissues == 1
    assert api.requests["reissue_key"] == 1


async def test_a_per_minute_429_on_the_reissue_is_retried_without_a_probe(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient, clock: FakeClock
) -> None:
    """A 429 proves nothing happened: the POST is repeated after `Retry-After`, no probe."""
    api.faults.rate_limited("reissue_key", retry_after=2)
    client = make_api_client()

    new = await client.reissue_key()

    assert clock.sleeps == [2.0]
    assert api.requests["get_key"] == 1
    assert api.requests["reissue_key"] == 2
    assert api.reissues == 1
    await assert_works(api, client, new.id)


async def test_a_session_jwt_reissues_again_after_a_lost_response(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """With a session JWT, a lost response is detected by the root key id changing; a
    second reissue is then safe (it revokes only the lost key) and the client ends up
    with a working key.
    """
    api.faults.drop_after_commit("reissue_key")
    first_id = api.root_key_id
    client = make_api_client(session_token=api.session_token)

    new = await client.reissue_key()

    assert api.reissues == 2
    assert api.requests["reissue_key"] == 2
    assert api.requests["get_key"] == 2  # the id before, and the probe
    assert new.id not in (first_id,)
    await assert_works(api, client, new.id)


async def test_a_session_jwt_drop_before_acting_retries_once(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """With a session JWT, a drop before the server acts leaves the root id unchanged:
    retried, exactly one reissue.
    """
    api.faults.drop("reissue_key")
    client = make_api_client(session_token=api.session_token)

    new = await client.reissue_key()

    assert api.reissues == 1
    assert api.requests["reissue_key"] == 2
    await assert_works(api, client, new.id)


async def test_a_probe_that_proved_nothing_happened_still_counts_as_an_attempt(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """With `max_retries=0` the probe runs (so the error is not `KeyLostError`), but the
    POST is not sent again: the caller gets the connection error, and no reissue ran.
    """
    api.faults.drop("reissue_key")
    client = make_api_client(max_retries=0)

    with pytest.raises(APIConnectionError) as caught:
        await client.reissue_key()

    assert not isinstance(caught.value, ReissueOutcomeUnknownError)
    assert api.reissues == 0
    assert api.requests["reissue_key"] == 1
    assert api.requests["get_key"] == 2


async def test_reissues_stop_after_max_retries_even_when_each_probe_says_retry(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """Every POST dropped before acting: it is sent `max_retries + 1` times, no more."""
    api.faults.drop("reissue_key", times=10)
    client = make_api_client(max_retries=2)

    with pytest.raises(APIConnectionError):
        await client.reissue_key()

    assert api.requests["reissue_key"] == 3
    assert api.reissues == 0


# --- sub_keys.create --------------------------------------------------------------------------


async def _children(api: FakeCS2CapAPI, client: AccountClient) -> int:
    return (await client.sub_keys.list()).pagination.total


@pytest.mark.parametrize(
    ("fault", "created"),
    [("drop_after_commit", 1), ("drop", 0), ("503", 0), ("truncated_json", 1)],
)
async def test_an_ambiguous_child_key_create_is_not_retried(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient, fault: str, created: int
) -> None:
    """Whether or not the child key was made, a create that failed after it was sent is
    not repeated (that could make two): `SubKeyOutcomeUnknownError` says to check.
    """
    if fault == "503":
        api.faults.fail("create_sub_key", status=503)
    else:
        getattr(api.faults, fault)("create_sub_key")
    client = make_api_client()

    with pytest.raises(SubKeyOutcomeUnknownError) as caught:
        await client.sub_keys.create("bot")

    assert "may have been created" in str(caught.value)
    assert "'bot'" in str(caught.value)
    assert api.requests["create_sub_key"] == 1
    assert await _children(api, client) == created


async def test_a_rate_limited_child_key_create_is_retried_once_and_creates_one(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient, clock: FakeClock
) -> None:
    """A per-minute 429 on create is safe to repeat: exactly one child key results."""
    api.faults.rate_limited("create_sub_key", retry_after=1)
    client = make_api_client()

    made = await client.sub_keys.create("bot")

    assert made.key_info.name == "bot"
    assert api.requests["create_sub_key"] == 2
    assert await _children(api, client) == 1


async def test_a_refused_child_key_create_is_retried(
    api: FakeCS2CapAPI,
    make_api_client: MakeApiClient,
    resolver_session: tuple[SwitchableResolver, aiohttp.ClientSession],
) -> None:
    """A refused connection on create is retried; one child key results."""
    resolver, session = resolver_session
    resolver.refuse = 1
    client = make_api_client(base_url=localhost_url(api), session=session)

    await client.sub_keys.create("bot")

    assert resolver.refused == 1
    assert api.requests["create_sub_key"] == 1
    assert await _children(api, client) == 1


async def test_a_non_ambiguous_error_on_reissue_is_raised_as_is(
    api: FakeCS2CapAPI, make_api_client: MakeApiClient
) -> None:
    """A 403 (e.g. unverified email) on the reissue is raised without a probe."""
    api.set_email_verified(False)
    client = make_api_client()

    with pytest.raises(PermissionDeniedError):
        await client.reissue_key()

    assert api.requests["get_key"] == 1
    assert api.requests["reissue_key"] == 1
    assert api.reissues == 0
