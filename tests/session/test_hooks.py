"""Instrumentation hooks: which events fire, in which order, and that a raising hook is harmless.

Against the fake, in-process, with scripted faults.
"""

from __future__ import annotations

import logging

import pytest

from cs2cap_account import (
    FakeClock,
    Hooks,
    InternalServerError,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from cs2cap_account.errors import APIConnectionError
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import MakeClient

Event = RequestEvent | ResponseEvent | RetryEvent


def recording_hooks(events: list[Event]) -> Hooks:
    """Hooks that append every event to `events`."""
    return Hooks(on_request=[events.append], on_response=[events.append], on_retry=[events.append])


async def test_hooks_fire_in_order_for_a_retried_request(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient, clock: FakeClock
) -> None:
    """A 503 then a 200 gives: request 1, response 1 (503), retry 1 (with the wait slept
    and the error), request 2, response 2 (200).
    """
    fake.faults.fail("get_key", status=503)
    events: list[Event] = []

    await make_fake_client(hooks=recording_hooks(events)).get_key()

    assert [type(event) for event in events] == [
        RequestEvent,
        ResponseEvent,
        RetryEvent,
        RequestEvent,
        ResponseEvent,
    ]
    first, response1, retry, second, response2 = events
    assert first == RequestEvent("GET", "/account/key", 1)
    assert isinstance(response1, ResponseEvent)
    assert (response1.method, response1.path, response1.attempt) == ("GET", "/account/key", 1)
    assert response1.status_code == 503
    assert response1.elapsed >= 0
    assert isinstance(retry, RetryEvent)
    assert (retry.attempt, retry.wait) == (1, clock.sleeps[0])
    assert isinstance(retry.error, InternalServerError)
    assert second == RequestEvent("GET", "/account/key", 2)
    assert isinstance(response2, ResponseEvent)
    assert (response2.attempt, response2.status_code) == (2, 200)


async def test_a_connection_error_fires_request_and_retry_but_no_response(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """No response event is reported for an attempt that got no response."""
    fake.faults.drop("get_key", times=2)  # the transport resends a dropped GET once
    events: list[Event] = []

    await make_fake_client(hooks=recording_hooks(events)).get_key()

    assert [type(event) for event in events] == [
        RequestEvent,
        RetryEvent,
        RequestEvent,
        ResponseEvent,
    ]
    retry = events[1]
    assert isinstance(retry, RetryEvent)
    assert isinstance(retry.error, APIConnectionError)


async def test_no_retry_event_when_nothing_is_retried(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A request that fails for good reports its attempt and response, and no retry."""
    fake.faults.fail("get_key", status=404, code="NOT_FOUND")
    events: list[Event] = []

    with pytest.raises(Exception):  # noqa: B017, PT011 - the events are what is tested
        await make_fake_client(hooks=recording_hooks(events)).get_key()

    assert [type(event) for event in events] == [RequestEvent, ResponseEvent]


async def test_raising_hooks_do_not_break_requests_and_are_logged(
    fake: FakeCS2CapAPI,
    make_fake_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hooks that raise on every event are logged and ignored: the request still retries
    and succeeds, and hooks registered after the broken one still run.
    """

    def broken(event: object) -> None:
        raise RuntimeError("metrics backend down")

    fake.faults.fail("get_key", status=502)
    after: list[Event] = []
    hooks = Hooks(
        on_request=[broken, after.append],
        on_response=[broken, after.append],
        on_retry=[broken, after.append],
    )
    caplog.set_level(logging.DEBUG, logger="cs2cap_account")

    info = await make_fake_client(hooks=hooks).get_key()

    assert info.is_active
    assert len(after) == 5
    failures = [r for r in caplog.records if "hook raised" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "a RequestEvent hook raised; ignored",
        "a ResponseEvent hook raised; ignored",
        "a RetryEvent hook raised; ignored",
        "a RequestEvent hook raised; ignored",
        "a ResponseEvent hook raised; ignored",
    ]
    assert all(r.exc_info is not None for r in failures)


async def test_hooks_are_shared_by_with_options_copies(
    fake: FakeCS2CapAPI, make_fake_client: MakeClient
) -> None:
    """A `with_options` copy reports to the same hooks."""
    events: list[Event] = []

    await make_fake_client(hooks=recording_hooks(events)).with_options(timeout=3).get_key()

    assert [type(event) for event in events] == [RequestEvent, ResponseEvent]
