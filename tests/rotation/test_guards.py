"""Guards around a rotation: an expired key, clock skew, bad arguments, a store that cannot
give back its journal, and a 401 while the store is down. Black-box on the in-process fake.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from pathlib import Path
from typing import Any

import attrs
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from cs2cap_account import (
    AccountClient,
    AuthenticationError,
    FakeClock,
    FileKeyStore,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RotationError,
    RotationEvent,
    SecretKey,
    StoreError,
)
from cs2cap_account._transport import Response, Transport
from cs2cap_account.testing import FakeCS2CapAPI

FAKE_BASE_URL = "https://fake.test/v1"
DAY = dt.timedelta(days=1)


def _client(
    fake: FakeCS2CapAPI, clock: FakeClock, transport: Transport | None = None
) -> AccountClient:
    return AccountClient(
        fake.root_key,
        base_url=FAKE_BASE_URL,
        transport=transport or fake.transport(clock=clock),
        clock=clock,
    )


# --- an expired key -------------------------------------------------------------------------


async def test_a_check_replaces_an_expired_key_with_the_recovery_token(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """A check that finds the key expired reissues with the token, saves and announces."""
    store = MemoryKeyStore()
    rotator = KeyRotator(
        fake_client, store=store, max_age=30 * DAY, recovery_token=fake.session_token
    )
    seen: list[RotationEvent] = []
    rotator.on_rotate(seen.append)
    await rotator.check()  # the store starts with the key in force
    expired_id = fake.root_key_id
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    event = await rotator.check()
    assert event is not None
    assert event.reason == "expired"
    assert event.previous_key_id == expired_id
    assert fake.is_active(rotator.current_key)
    stored = await store.load()
    assert stored is not None
    assert stored.key == rotator.current_key
    assert stored.pending is None
    assert [e.key_id for e in seen] == [event.key_id]
    assert (await fake_client.get_key()).id == event.key_id


async def test_rotate_now_replaces_an_expired_key_with_the_recovery_token(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """`rotate_now()` on an expired key reissues with the token rather than refusing."""
    rotator = KeyRotator(fake_client, recovery_token=fake.session_token)
    await rotator.check()  # the store starts with the key in force
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    event = await rotator.rotate_now()
    assert fake.reissues == 1
    assert fake.is_active(event.new_key)
    assert rotator.current_key == event.new_key


async def test_an_expired_key_with_children_to_recreate_still_rotates(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """The expired key cannot list its children: the rotation goes on without them."""
    fake.add_child_key("worker")
    rotator = KeyRotator(fake_client, recovery_token=fake.session_token, recreate_sub_keys=True)
    await rotator.check()
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    event = await rotator.rotate_now()
    assert event.sub_keys == {}
    assert fake.is_active(event.new_key)


async def test_an_expired_key_without_a_token_says_it_expired(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """Without a token, an expired key fails with how to recover, not "still in force"."""
    store = MemoryKeyStore()
    rotator = KeyRotator(fake_client, store=store, max_age=30 * DAY)
    await rotator.check()  # the store starts with the key in force
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    for attempt in (rotator.check, rotator.rotate_now):
        with pytest.raises(RotationError) as caught:
            await attempt()
        message = str(caught.value)
        assert "expired" in message
        assert "recovery_token" in message
        assert "still in force" not in message
    assert fake.reissues == 0
    stored = await store.load()
    assert stored is not None
    assert stored.pending is None  # the journal was closed again


async def test_a_first_check_on_an_empty_store_replaces_a_key_already_expired(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """A rotator started on a key that has already expired, with nothing in the store yet:
    the key in force is recorded (its id read with the token, since the key itself is
    refused), then replaced with the token like any expired key.
    """
    store = MemoryKeyStore()
    expired_id = fake.root_key_id
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    rotator = KeyRotator(fake_client, store=store, recovery_token=fake.session_token)

    event = await rotator.check()

    assert event is not None
    assert (event.reason, event.previous_key_id) == ("expired", expired_id)
    assert fake.reissues == 1
    assert fake.is_active(rotator.current_key)
    stored = await store.load()
    assert stored is not None
    assert (stored.key, stored.generation, stored.pending) == (rotator.current_key, 2, None)


async def test_a_first_check_on_an_empty_store_without_a_token_says_it_expired(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """The same without a token: a `RotationError` that says how to recover; nothing is
    reissued and nothing is written.
    """
    store = MemoryKeyStore()
    fake.set_root_expires_at(clock.now() - dt.timedelta(seconds=1))
    rotator = KeyRotator(fake_client, store=store)

    with pytest.raises(RotationError, match="expired") as caught:
        await rotator.check()

    assert "recovery_token" in str(caught.value)
    assert fake.reissues == 0
    assert await store.load() is None


# --- clock skew -------------------------------------------------------------------------------


def _skewed_fake(clock: FakeClock, server_behind_local: dt.timedelta) -> FakeCS2CapAPI:
    """A fake whose wall clock runs `server_behind_local` behind the local `clock`."""
    return FakeCS2CapAPI(
        tier="quant", clock=clock.monotonic, wall_clock=lambda: clock.now() - server_behind_local
    )


@attrs.define
class _WithoutDate:
    """A transport that strips the `Date` header from every response."""

    inner: Transport

    @property
    def closed(self) -> bool:
        """Whether the wrapped transport is closed."""
        return self.inner.closed

    async def send(self, method: str, url: str, **kwargs: Any) -> Response:
        """Send through the wrapped transport; drop `Date` from the answer."""
        resp = await self.inner.send(method, url, **kwargs)
        headers = CIMultiDict(resp.headers)
        headers.popall("Date", None)
        return Response(resp.status, CIMultiDictProxy(headers), resp.body, resp.content_type)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()


async def _check_every_hour(rotator: KeyRotator, clock: FakeClock, hours: int) -> None:
    for _ in range(hours):
        await rotator.check()
        clock.advance(3600)


async def test_a_local_clock_ahead_does_not_rotate_in_a_loop(clock: FakeClock) -> None:
    """Local clock 31 days ahead, max_age 30 days: the server's `Date` says the key is new."""
    fake = _skewed_fake(clock, 31 * DAY)
    async with _client(fake, clock) as client:
        rotator = KeyRotator(client, max_age=30 * DAY)
        await _check_every_hour(rotator, clock, 24)
    assert fake.reissues == 0


async def test_without_a_date_header_skew_rotates_at_most_once_a_day(clock: FakeClock) -> None:
    """With no `Date` to go by, the monotonic guard allows one scheduled rotation a day."""
    fake = _skewed_fake(clock, 31 * DAY)
    async with _client(fake, clock, _WithoutDate(fake.transport(clock=clock))) as client:
        rotator = KeyRotator(client, max_age=30 * DAY)
        await _check_every_hour(rotator, clock, 48)
    assert 1 <= fake.reissues <= 3  # at start (the local clock says 31 days), then daily


async def test_a_local_clock_behind_still_rotates_a_due_key(clock: FakeClock) -> None:
    """Local clock 31 days behind: by the server's time the 31-day-old key is due."""
    fake = _skewed_fake(clock, -31 * DAY)
    fake.age_root_key(31 * DAY)
    async with _client(fake, clock) as client:
        rotator = KeyRotator(client, max_age=30 * DAY)
        event = await rotator.check()
    assert event is not None
    assert event.reason == "max_age"
    assert fake.reissues == 1


async def test_a_created_at_in_the_future_warns_once_and_counts_from_then(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock, caplog: Any
) -> None:
    """A future `created_at` is logged once and read as "created now": rotated after max_age."""
    fake.set_root_created_at(clock.now() + 10 * DAY)
    rotator = KeyRotator(fake_client, max_age=30 * DAY)
    with caplog.at_level(logging.WARNING, "cs2cap_account.rotation"):
        await _check_every_hour(rotator, clock, 3)
    warnings = [r for r in caplog.records if "in the future" in r.getMessage()]
    assert len(warnings) == 1
    assert fake.reissues == 0
    clock.advance((30 * DAY).total_seconds())
    event = await rotator.check()
    assert event is not None
    assert event.reason == "max_age"


# --- bad arguments ----------------------------------------------------------------------------

_SETTINGS: list[tuple[str, object, type[Exception]]] = [
    *[
        (name, bad, ValueError)
        for name in ("check_interval", "callback_timeout")
        for bad in (math.nan, math.inf, -1.0, 0)
    ],
    *[
        (name, bad, TypeError)
        for name in ("check_interval", "callback_timeout", "jitter")
        for bad in ("1", None, True)
    ],
    *[("jitter", bad, ValueError) for bad in (math.nan, -0.1, 1.0, math.inf)],
    *[
        (name, bad, ValueError)
        for name in ("max_age", "before_expiry", "child_max_age")
        for bad in (math.nan, math.inf, -1.0, -DAY)
    ],
    *[
        (name, bad, TypeError)
        for name in ("max_age", "before_expiry", "child_max_age")
        for bad in ("30d", True, [1])
    ],
    *[("children", bad, TypeError) for bad in ("bot", b"bot", 42, [1], [None], ["bot", 2])],
    *[
        ("children", bad, ValueError)
        for bad in ([""], ["  "], ["sk_live_root_" + "a" * 24 + "0000"])
    ],
    ("recovery_token", b"jwt", TypeError),
    ("recovery_token", 42, TypeError),
    ("recovery_token", "", ValueError),
    ("recreate_sub_keys", "yes", TypeError),
    ("recreate_sub_keys", None, TypeError),
    ("store", object(), TypeError),
    ("store", "key.json", TypeError),
]


@pytest.mark.parametrize(("name", "bad", "error"), _SETTINGS)
async def test_every_setting_is_checked_at_the_boundary(
    fake_client: AccountClient, name: str, bad: object, error: type[Exception]
) -> None:
    """Each bad value of each `KeyRotator` argument fails the constructor, naming it."""
    kwargs: dict[str, Any] = {name: bad}
    with pytest.raises(error, match=name):
        KeyRotator(fake_client, **kwargs)


async def test_the_client_must_be_an_account_client() -> None:
    """A `KeyRotator` over anything but an `AccountClient` is a `TypeError`."""
    with pytest.raises(TypeError, match="AccountClient"):
        KeyRotator("sk_live_x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (None, TypeError),
        (5, TypeError),
        (b"manual", TypeError),
        ("", ValueError),
        ("  ", ValueError),
        ("a\nb", ValueError),
        ("x" * 201, ValueError),
    ],
)
async def test_rotate_now_checks_its_reason_before_writing_anything(
    fake: FakeCS2CapAPI, fake_client: AccountClient, reason: object, error: type[Exception]
) -> None:
    """A bad `reason` fails `rotate_now()` before the journal, so the store stays readable."""
    store = MemoryKeyStore()
    rotator = KeyRotator(fake_client, store=store)
    with pytest.raises(error, match="reason"):
        await rotator.rotate_now(reason)  # type: ignore[arg-type]
    assert fake.reissues == 0
    assert await store.load() is None


async def test_on_rotate_needs_a_callable(fake_client: AccountClient) -> None:
    """`on_rotate()` refuses what it could never call."""
    rotator = KeyRotator(fake_client)
    with pytest.raises(TypeError, match="callable"):
        rotator.on_rotate("print")  # type: ignore[arg-type]


async def test_good_settings_pass(fake: FakeCS2CapAPI, fake_client: AccountClient) -> None:
    """The checks accept what the signature promises: ints, timedeltas, a `SecretKey`."""
    rotator = KeyRotator(
        fake_client,
        max_age=30 * DAY,
        before_expiry=3600,
        check_interval=60,
        jitter=0,
        recovery_token=SecretKey(fake.session_token.reveal()),
        callback_timeout=5,
        child_max_age=dt.timedelta(days=7),
        children=iter(["bot", "ci", "bot"]),
    )
    event = await rotator.rotate_now("manual")
    assert event.reason == "manual"
    assert rotator._children.names == ("bot", "ci")  # once each, in order
    assert rotator._children.max_age == dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("name", "error"), [(None, TypeError), (42, TypeError), ("", ValueError), (" ", ValueError)]
)
async def test_rotate_child_now_checks_the_name_before_any_request(
    fake: FakeCS2CapAPI, fake_client: AccountClient, name: object, error: type[Exception]
) -> None:
    """A bad child name fails `rotate_child_now` at once: no request, nothing written."""
    rotator = KeyRotator(fake_client)
    before = sum(fake.requests.values())
    with pytest.raises(error, match="name"):
        await rotator.rotate_child_now(name)  # type: ignore[arg-type]
    assert sum(fake.requests.values()) == before


# --- the journal must read back ---------------------------------------------------------------


class _ForgetfulStore(MemoryKeyStore):
    """A memory store whose loads misreport a journal: dropped, or an error."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def load(self) -> KeyRecord | None:
        """The stored record, except that a journal comes back wrong."""
        record = await super().load()
        if record is None or record.pending is None:
            return record
        if self.mode == "raises":
            raise StoreError("cannot parse the stored record (simulated)")
        if self.mode == "other":
            return attrs.evolve(record, pending=attrs.evolve(record.pending, reason="lost"))
        return attrs.evolve(record, pending=None)


@pytest.mark.parametrize("mode", ["raises", "other", "drops"])
async def test_a_journal_that_does_not_read_back_stops_before_the_reissue(
    fake: FakeCS2CapAPI, fake_client: AccountClient, mode: str
) -> None:
    """The journal must round-trip through the store before anything is revoked."""
    store = _ForgetfulStore(mode)
    rotator = KeyRotator(fake_client, store=store)
    with pytest.raises(RotationError, match="nothing was reissued"):
        await rotator.rotate_now()
    assert fake.reissues == 0
    assert fake.is_active(fake_client.api_key or SecretKey("x"))
    stored = await MemoryKeyStore.load(store)
    assert stored is not None
    assert stored.pending is None  # closed again


class _LooseFileStore(FileKeyStore):
    """A real file store whose file turns readable by others right after a journal is saved
    (as a careless backup tool might leave it): the store then refuses to read it.
    """

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Save, then loosen the file's mode if the record is a journal."""
        await super().save(record, expected_generation=expected_generation)
        if record.pending is not None:
            os.chmod(self.path, 0o644)


async def test_a_file_store_that_cannot_read_its_journal_stops_before_the_reissue(
    fake: FakeCS2CapAPI, fake_client: AccountClient, tmp_path: Path
) -> None:
    """A real `FileKeyStore` that cannot read the journal back: no reissue, key in force."""
    store = _LooseFileStore(tmp_path / "key.json")
    rotator = KeyRotator(fake_client, store=store)
    await rotator.check()
    with pytest.raises(RotationError, match="cannot be read back") as caught:
        await rotator.rotate_now()
    assert "still in force" in str(caught.value)
    assert fake.reissues == 0
    assert (await fake_client.get_key()).id == fake.root_key_id


# --- a 401 while the store is down -------------------------------------------------------------


class _DownStore(MemoryKeyStore):
    """A memory store whose loads fail while `down`."""

    down = False

    async def load(self) -> KeyRecord | None:
        """The stored record, or `StoreError` while down."""
        if self.down:
            raise StoreError("connection refused (simulated)")
        return await super().load()


async def test_a_401_while_the_store_is_down_is_an_authentication_error(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """The refusal reaches the caller as `AuthenticationError`; the store error is logged."""
    store = _DownStore()
    rotator = KeyRotator(fake_client, store=store)
    await rotator.check()
    fake_client.use_key("sk_live_not_a_key_at_all_000000")
    store.down = True
    with pytest.raises(AuthenticationError):
        await fake_client.get_key()
    assert rotator.generation == 1
