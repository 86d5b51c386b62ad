"""Logging on `cs2cap_account`: one DEBUG line per attempt, one INFO line per retry, no secrets.

Against the fake, in-process.
"""

from __future__ import annotations

import logging
import re

import pytest

from cs2cap_account import AccountClient, FakeClock, Hooks, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import MakeClient

BODY_MARKER = "detail-text-from-the-response-body"
ATTEMPT_LINE = re.compile(r"^GET /account/key -> (\d{3}|\w+) \(attempt (\d), \d+\.\d ms\)$")


async def test_one_debug_line_per_attempt_and_one_info_line_per_retry(
    fake: FakeCS2CapAPI,
    make_fake_client: MakeClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three attempts (503, dropped, 200) log three DEBUG lines naming method, path,
    status or error, attempt and elapsed ms, and two INFO lines giving each wait.
    """
    caplog.set_level(logging.DEBUG, logger="cs2cap_account")
    fake.faults.fail("get_key", status=503, code="SERVICE_UNAVAILABLE", detail="x")
    fake.faults.drop("get_key", times=2)  # the transport resends a dropped GET once

    await make_fake_client().get_key()

    records = [r for r in caplog.records if r.name == "cs2cap_account"]
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    outcomes = [ATTEMPT_LINE.match(line) for line in debug]
    assert all(outcomes), debug
    assert [(m.group(1), m.group(2)) for m in outcomes if m] == [
        ("503", "1"),
        ("APIConnectionError", "2"),
        ("200", "3"),
    ]
    assert info == [
        f"retrying GET /account/key in {clock.sleeps[0]:.2f} s after HTTP 503 "
        "SERVICE_UNAVAILABLE (attempt 2 of 3)",
        f"retrying GET /account/key in {clock.sleeps[1]:.2f} s after APIConnectionError "
        "(attempt 3 of 3)",
    ]


async def test_no_debug_formatting_when_debug_is_off(
    make_fake_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO, attempts log nothing (and a success logs nothing at all)."""
    caplog.set_level(logging.INFO, logger="cs2cap_account")

    await make_fake_client().get_key()

    assert [r for r in caplog.records if r.name == "cs2cap_account"] == []


def _everything_logged(record: logging.LogRecord) -> str:
    """All text a handler could emit for `record`: message, raw args, traceback."""
    parts = [str(record.msg), record.getMessage(), repr(record.args)]
    if isinstance(record.args, tuple):
        parts.extend(repr(arg) for arg in record.args)
        parts.extend(str(arg) for arg in record.args)
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def test_a_full_retrying_scenario_logs_no_key_and_no_bearer(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A full retrying scenario at DEBUG logs no plaintext key, no JWT, no "Bearer".

    Retries, probed reissues, a lost-response reissue with a session JWT, a rate limited
    child-key create, a credential reload after 401 and a raising hook: no record's
    message, args or traceback holds a secret, the word Bearer, or response body text.
    """
    caplog.set_level(logging.DEBUG, logger="cs2cap_account")
    secrets: list[SecretKey] = []

    def broken_hook(event: object) -> None:
        raise ValueError("metrics backend down")

    hooks = Hooks(on_retry=[broken_hook])
    api = FakeCS2CapAPI(clock=clock.monotonic, wall_clock=clock.now)
    secrets += [api.root_key, api.session_token]
    client = AccountClient(
        api.root_key,
        transport=api.transport(clock=clock),
        clock=clock,
        hooks=hooks,
        max_retries=3,
    )
    jwt_client = AccountClient(
        session_token=api.session_token, transport=api.transport(clock=clock), clock=clock
    )
    async with client, jwt_client:
        api.faults.fail("get_key", status=503, detail=BODY_MARKER, times=2)
        await client.get_key()

        api.faults.drop("reissue_key")
        secrets.append((await client.reissue_key()).key)

        api.faults.fail("reissue_key", status=503, detail=BODY_MARKER)
        secrets.append((await client.reissue_key()).key)

        api.faults.rate_limited("create_sub_key", retry_after=1)
        secrets.append((await client.sub_keys.create("bot")).key)

        api.faults.drop_after_commit("reissue_key")
        secrets.append((await jwt_client.reissue_key()).key)

        # `client` now holds a revoked key; the store (here a stub) has the new one.
        async def reload() -> SecretKey:
            return api.root_key

        client.on_unauthorized(reload)
        await client.get_key()
        secrets.append(api.root_key)

    records = [r for r in caplog.records if r.name.startswith("cs2cap_account")]
    levels = {r.levelno for r in records}
    assert {logging.DEBUG, logging.INFO, logging.ERROR} <= levels  # the capture saw it all
    assert any("reloaded the API key" in r.getMessage() for r in records)
    text = "\n".join(_everything_logged(r) for r in records)
    assert "Bearer" not in text
    assert BODY_MARKER not in text  # response bodies stay out of the log
    assert "root key reissue did not take effect (HTTP 503 SERVICE_UNAVAILABLE)" in text
    for secret in secrets:
        assert secret.reveal() not in text
    assert len(secrets) == 7
    assert str(secrets[-1]) in text  # the redacted form was logged: args were inspected
