"""Publishing to key sinks from a `KeyRotator`: when, how often, and what a failure does."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    KeyRotator,
    MemoryKeyStore,
    RotationEvent,
    SecretKey,
)
from cs2cap_account.sinks import SinkFailure
from cs2cap_account.testing import FakeCS2CapAPI
from sinks._support import RecordingSink

BASE = "https://fake.test/v1"


def _client(fake: FakeCS2CapAPI, clock: FakeClock, key: SecretKey | None = None) -> AccountClient:
    return AccountClient(
        key or fake.root_key, base_url=BASE, transport=fake.transport(clock=clock), clock=clock
    )


async def test_a_sink_gets_the_key_after_it_is_saved_and_verified_and_before_callbacks(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """When the sink runs, the store holds the new key and the API accepts it; callbacks
    run after the sink.
    """
    store = MemoryKeyStore()
    order: list[str] = []
    seen: list[tuple[bool, bool]] = []

    class Checking(RecordingSink):
        async def publish(self, event: RotationEvent) -> None:
            record = await store.load()
            seen.append(
                (record is not None and record.key == event.new_key, fake.is_active(event.new_key))
            )
            await super().publish(event)

    sink = Checking(order=order)
    rotator = KeyRotator(fake_client, store=store, sinks=[sink])
    rotator.on_rotate(lambda _event: order.append("callback"))
    event = await rotator.rotate_now()
    assert seen == [(True, True)]
    assert order == ["recording", "callback"]
    assert [e.key_id for e in sink.events] == [event.key_id]
    assert event.sink_errors == ()


async def test_a_failing_sink_is_reported_and_never_undoes_the_rotation(
    fake: FakeCS2CapAPI, fake_client: AccountClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink down through every retry: listed in `sink_errors`, logged; the key stands,
    the other sinks and the callbacks still get it.
    """
    down = RecordingSink(name="down", down=True)
    up = RecordingSink(name="up")
    called: list[RotationEvent] = []
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[down, up])
    rotator.on_rotate(called.append)
    event = await rotator.rotate_now()
    assert [(f.sink, f.attempts) for f in event.sink_errors] == [("down", 3)]
    assert isinstance(event.sink_errors[0], SinkFailure)
    assert isinstance(event.sink_errors[0].error, ConnectionError)
    assert down.attempts == 3
    assert rotator.current_key == event.new_key
    assert fake.is_active(event.new_key)
    assert [e.key_id for e in up.events] == [event.key_id]
    assert called and called[0].sink_errors == event.sink_errors
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and "down" in r.getMessage()]
    assert logged, "the failing sink is logged"


async def test_a_sink_that_missed_a_key_catches_up_at_the_next_check_once(
    fake_client: AccountClient,
) -> None:
    """Down during the rotation, back afterwards: the next check publishes the key to it,
    and later checks do not publish it again.
    """
    sink = RecordingSink(down=True)
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), max_age=86400 * 30, sinks=[sink])
    event = await rotator.rotate_now()
    assert event.sink_errors
    assert rotator._publisher.published() == {"recording": None}
    sink.down = False
    await rotator.check()
    await rotator.check()
    assert [(e.key_id, e.generation) for e in sink.events] == [(event.key_id, event.generation)]
    assert rotator._publisher.published() == {"recording": event.generation}


async def test_a_restarted_rotator_republishes_the_stored_key_a_sink_missed(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """The process that rotated could not reach the sink and exited; the next rotator on
    the same store publishes that generation at its first check.
    """
    store = MemoryKeyStore()
    first = KeyRotator(fake_client, store=store, sinks=[RecordingSink(down=True)])
    event = await first.rotate_now()
    await first.stop()
    sink = RecordingSink()
    async with _client(fake, clock, event.new_key) as client:
        restarted = KeyRotator(client, store=store, max_age=86400 * 30, sinks=[sink])
        await restarted.check()
    assert [(e.key_id, e.generation, e.new_key) for e in sink.events] == [
        (event.key_id, event.generation, event.new_key)
    ]
    assert sink.events[0].reason == "republished"


async def test_an_adopting_rotator_publishes_the_key_another_process_made(
    fake: FakeCS2CapAPI, fake_client: AccountClient, clock: FakeClock
) -> None:
    """Two rotators on one store: the one that adopts the other's key publishes it too
    (each sink is idempotent per key, so two publishers are safe).
    """
    store = MemoryKeyStore()
    leader = KeyRotator(fake_client, store=store)
    follower_sink = RecordingSink()
    async with _client(fake, clock) as other:
        follower = KeyRotator(other, store=store, max_age=86400 * 30, sinks=[follower_sink])
        await follower.check()
        event = await leader.rotate_now()
        await follower.check()
    assert follower_sink.events[-1].key_id == event.key_id
    assert follower_sink.events[-1].generation == event.generation


async def test_a_hung_sink_is_bounded_by_the_timeout(fake_client: AccountClient) -> None:
    """A sink that never answers is given up on after its timeout per attempt."""

    class Hung(RecordingSink):
        async def publish(self, event: RotationEvent) -> None:
            self.attempts += 1
            await asyncio.Event().wait()

    sink = Hung(name="hung")
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink], callback_timeout=0.01)
    event = await rotator.rotate_now()
    assert [f.sink for f in event.sink_errors] == ["hung"]
    assert isinstance(event.sink_errors[0].error, (TimeoutError, asyncio.TimeoutError))
    assert sink.attempts == 3


async def test_a_key_is_published_once_per_sink_even_when_announced_again(
    fake_client: AccountClient,
) -> None:
    """Two rotations: each sink gets each key exactly once, in order."""
    sink = RecordingSink()
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), max_age=86400 * 30, sinks=[sink])
    one = await rotator.rotate_now()
    await rotator.check()
    two = await rotator.rotate_now()
    await rotator.check()
    assert [e.generation for e in sink.events] == [one.generation, two.generation]


@pytest.mark.parametrize(
    ("sinks", "error", "message"),
    [
        ("file.txt", TypeError, "list of KeySink"),
        (42, TypeError, "list of KeySink"),
        ([object()], TypeError, "async publish"),
        ([RecordingSink(), RecordingSink()], ValueError, "unique name"),
    ],
)
def test_sinks_are_checked_at_construction(
    fake_client: AccountClient, sinks: object, error: type[Exception], message: str
) -> None:
    """A wrong `sinks=` is refused with a clear error."""
    with pytest.raises(error, match=message):
        KeyRotator(fake_client, sinks=sinks)  # type: ignore[arg-type]
