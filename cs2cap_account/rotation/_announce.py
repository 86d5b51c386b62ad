"""Telling about a new key (step 9): the key sinks, then callbacks, then `events()`.

Likewise for a child key rotated on its own (`announce_child`). Once per key id in a
process, whether the key was rotated here or adopted from the store. A sink that missed
a key (it failed, or this process has not published to it yet: a restart, an adoption
that was no news) is published to again by `republish()`, which every check calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final, cast

import attrs

from cs2cap_account._clock import Clock
from cs2cap_account.rotation._callbacks import Callback, run_callbacks
from cs2cap_account.rotation._event import ChildRotationEvent, RotationEvent
from cs2cap_account.rotation._failure import FailureEvent
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.sinks._publish import Publisher
from cs2cap_account.stores._record import StoredSubKey

__all__ = ["Announcer", "child_event"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

_CALLBACK_ATTEMPTS: Final = 3


def child_event(
    name: str,
    entry: StoredSubKey,
    previous_key_id: str | None,
    reason: str,
    *,
    now: dt.datetime,
) -> ChildRotationEvent:
    """The event telling of the child `name`'s stored key `entry`.

    Rotated at the child's creation, as the server gave it (`now` for a record written
    before child metadata was kept).
    """
    return ChildRotationEvent(
        name=name,
        new_key=entry.key,
        key_id=entry.id,
        previous_key_id=previous_key_id,
        generation=entry.generation,
        rotated_at=entry.info.created_at if entry.info else now,
        reason=reason,
    )


@attrs.define
class Announcer:
    """The callbacks and subscribers of one rotator, and what it announced last."""

    _holding: Holding
    _clock: Clock
    _timeout: float
    publisher: Publisher
    callbacks: list[Callback] = attrs.field(factory=list)
    failure_callbacks: list[Callable[[FailureEvent], object]] = attrs.field(factory=list)
    # Instrumentation (metrics): called with each event once told, never fatal.
    watchers: list[Callable[[RotationEvent | ChildRotationEvent | FailureEvent], None]] = (
        attrs.field(factory=list)
    )
    child_callbacks: list[Callable[[ChildRotationEvent], object]] = attrs.field(factory=list)
    # The `events()` subscribers: each one's queue, and the kinds of event it takes.
    _subscribers: dict[asyncio.Queue[Any], tuple[type, ...]] = attrs.field(factory=dict)
    _children_announced: set[str] = attrs.field(factory=set)

    async def announce(self, event: RotationEvent) -> RotationEvent:
        """9. Sinks, callbacks, then `events()` subscribers; once per key id in this process."""
        if event.key_id in self._holding.announced:
            return event
        self._holding.announced.add(event.key_id)
        # Known at once, before the callbacks end: a rotate_now() that finds the key already
        # moved returns this event rather than reissuing again (its callback_errors then
        # are those known so far: none).
        self._holding.last_event = event
        sink_errors = await self.publisher.publish(event)
        if sink_errors:
            event = attrs.evolve(event, sink_errors=sink_errors)
            self._holding.last_event = event
        failures = await run_callbacks(
            self.callbacks,
            event,
            timeout=self._timeout,
            attempts=_CALLBACK_ATTEMPTS,
            clock=self._clock,
        )
        event = attrs.evolve(event, callback_errors=failures)
        self._holding.last_event = event
        self._deliver(event)
        logger.info(
            "root key rotated: %s -> %s (generation %d, %s)",
            event.previous_key_id,
            event.key_id,
            event.generation,
            event.reason,
        )
        return event

    async def announce_child(self, event: ChildRotationEvent) -> ChildRotationEvent:
        """A child key's new key: child sinks, child callbacks, `events(children=True)`.

        Once per child key id in this process.
        """
        if event.key_id in self._children_announced:
            return event
        self._children_announced.add(event.key_id)
        event = attrs.evolve(event, sink_errors=await self.publisher.publish_child(event))
        failures = await run_callbacks(
            cast("list[Callback]", self.child_callbacks),
            cast("Any", event),
            timeout=self._timeout,
            attempts=_CALLBACK_ATTEMPTS,
            clock=self._clock,
        )
        event = attrs.evolve(event, callback_errors=failures)
        self._deliver(event)
        logger.info(
            "child key %r rotated: %s -> %s (generation %d, %s)",
            event.name,
            event.previous_key_id,
            event.key_id,
            event.generation,
            event.reason,
        )
        return event

    async def republish(self) -> None:
        """Publish the stored key held here to every sink that has not been given it.

        Only a key announced here (or known here from the start) is: never one held only
        in memory, nor one a rotation in flight has yet to verify. Nothing here raises.
        """
        holding = self._holding
        key_id = holding.key_id
        if key_id is None or holding.unsaved is not None or key_id not in holding.announced:
            return
        if not self.publisher.behind(key_id):
            return
        event = holding.last_event
        if event is None or event.key_id != key_id:
            event = RotationEvent(
                new_key=holding.key,
                key_id=key_id,
                previous_key_id=None,
                generation=holding.generation,
                rotated_at=self._clock.now(),
                reason="republished",
            )
        await self.publisher.publish(event)

    async def republish_children(self) -> None:
        """Publish each child key known here to every child sink that lacks it.

        A sink lacks one after it failed, or after a restart. Nothing here raises.
        """
        for name, entry in tuple(self._holding.children.items()):
            if not self.publisher.child_behind(name, entry.id):
                continue
            event = child_event(name, entry, None, "republished", now=self._clock.now())
            await self.publisher.publish_child(event)

    async def subscribe(self, *kinds: type) -> AsyncGenerator[Any, None]:
        """Every event of `kinds` from the moment iteration starts, in the order told."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._subscribers[queue] = kinds
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.pop(queue, None)

    async def tell(self, event: FailureEvent) -> None:
        """A failure, halt or recovery: `on_failure` callbacks, then `events(failures=True)`."""
        await run_callbacks(
            cast("list[Callback]", self.failure_callbacks),
            cast("Any", event),
            timeout=self._timeout,
            attempts=_CALLBACK_ATTEMPTS,
            clock=self._clock,
        )
        self._deliver(event)

    def _deliver(self, event: RotationEvent | ChildRotationEvent | FailureEvent) -> None:
        """Hand `event` to the subscribers that take its kind, then to the watchers."""
        for queue, kinds in self._subscribers.items():
            if isinstance(event, kinds):
                queue.put_nowait(event)
        for watcher in self.watchers:
            try:
                watcher(event)
            except Exception:
                logger.exception("an instrumentation watcher raised; ignored")
