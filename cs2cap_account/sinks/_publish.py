"""Publishing a new key to the rotator's sinks: concurrently, retried, bounded, never fatal.

`Publisher` remembers, per sink, the key it last delivered, so each key is published to
each sink once in a process (a sink's own idempotency covers the rest), and a sink that
failed, or that this process has not published to yet (a restart, an adoption), is
published to at the next look (`Announcer.republish`, called by every check).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, cast

import attrs

from cs2cap_account._clock import Clock
from cs2cap_account._retry import retrying
from cs2cap_account._secret import redact_text
from cs2cap_account.sinks._protocol import ChildKeySink, KeySink, sink_name

if TYPE_CHECKING:
    # Imported when used: the rotation package imports this module as it loads.
    from cs2cap_account.rotation._event import ChildRotationEvent, RotationEvent, SinkFailure

__all__ = ["ATTEMPTS", "Publisher", "checked_sinks"]

logger: Final = logging.getLogger("cs2cap_account.sinks")

ATTEMPTS: Final = 3
"""Tries per sink and key within one publish (with the SDK's backoff between them)."""


def checked_sinks(sinks: object) -> tuple[KeySink, ...]:
    """`sinks` as a tuple, or a clear `TypeError`/`ValueError`.

    Each must have an async `publish(event)`; their names must be unique.
    """
    if sinks is None:
        return ()
    if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
        raise TypeError(f"sinks must be a list of KeySink, not {type(sinks).__name__}")
    checked = tuple(sinks)
    names: set[str] = set()
    for sink in checked:
        if not isinstance(sink, KeySink) or not callable(getattr(sink, "publish", None)):
            raise TypeError(
                f"each sink must be a KeySink (an async publish(event)), not {type(sink).__name__}"
            )
        name = sink_name(sink)
        if name in names:
            raise ValueError(f"two sinks are named {name!r}; give each a unique name")
        names.add(name)
    return checked


@attrs.frozen
class _Delivered:
    """What a sink was last given: the key's id and its generation."""

    key_id: str
    generation: int


@attrs.define
class Publisher:
    """The sinks of one rotator, and which key each was last given."""

    _sinks: tuple[KeySink, ...]
    _clock: Clock
    _timeout: float
    _delivered: dict[str, _Delivered] = attrs.field(factory=dict)
    # The child key each sink that publishes children was last given, by (sink, child).
    _children_delivered: dict[tuple[str, str], str] = attrs.field(factory=dict)
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    @property
    def sinks(self) -> tuple[KeySink, ...]:
        """The sinks, in the order given."""
        return self._sinks

    def published(self) -> Mapping[str, int | None]:
        """Each sink's name, and the generation last published to it (None: none yet)."""
        view = {
            sink_name(sink): (
                None if (done := self._delivered.get(sink_name(sink))) is None else done.generation
            )
            for sink in self._sinks
        }
        return MappingProxyType(view)

    def behind(self, key_id: str) -> bool:
        """Whether some sink has not been given the key `key_id` yet."""
        return any(
            getattr(self._delivered.get(sink_name(sink)), "key_id", None) != key_id
            for sink in self._sinks
        )

    async def publish(self, event: RotationEvent) -> tuple[SinkFailure, ...]:
        """Publish `event` to every sink not given its key yet; return those that failed.

        Concurrently; each sink within the timeout per attempt, retried with backoff up
        to `ATTEMPTS` tries. Nothing here raises: a failure is logged and returned.
        """
        async with self._lock:
            due = [s for s in self._sinks if self._delivered_to(s) != event.key_id]
            results = await asyncio.gather(*(self._publish_one(sink, event) for sink in due))
        return tuple(failure for failure in results if failure is not None)

    async def publish_child(self, event: ChildRotationEvent) -> tuple[SinkFailure, ...]:
        """Publish a child's new key to every child sink not given it yet, as `publish`.

        A child sink is one with a `publish_child(event)` (`ChildKeySink`).
        """
        async with self._lock:
            due = [
                sink
                for sink in self._sinks
                if callable(getattr(sink, "publish_child", None))
                and self._children_delivered.get((sink_name(sink), event.name)) != event.key_id
            ]
            results = await asyncio.gather(*(self._publish_one(sink, event) for sink in due))
        return tuple(failure for failure in results if failure is not None)

    def child_behind(self, name: str, key_id: str) -> bool:
        """Whether some sink that publishes children has not been given this child key."""
        return any(
            self._children_delivered.get((sink_name(sink), name)) != key_id
            for sink in self._sinks
            if callable(getattr(sink, "publish_child", None))
        )

    def _delivered_to(self, sink: KeySink) -> str | None:
        done = self._delivered.get(sink_name(sink))
        return None if done is None else done.key_id

    async def _publish_one(
        self, sink: KeySink, event: RotationEvent | ChildRotationEvent
    ) -> SinkFailure | None:
        from cs2cap_account.rotation._event import ChildRotationEvent, SinkFailure

        name = sink_name(sink)
        what = (
            f"child key {event.name!r}, generation"
            if isinstance(event, ChildRotationEvent)
            else "generation"
        )
        try:
            async for attempt in retrying(attempts=ATTEMPTS, clock=self._clock):
                with attempt:
                    if isinstance(event, ChildRotationEvent):
                        sent = cast("ChildKeySink", sink).publish_child(event)
                    else:
                        sent = sink.publish(event)
                    await asyncio.wait_for(sent, self._timeout)
        except Exception as exc:
            if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not str(exc):
                exc = TimeoutError(f"did not finish within {self._timeout:g} s")
            logger.error(
                "could not publish %s %d (key %s) to the key sink %s after %d "
                "tries: %s; it is published again at the next check",
                what,
                event.generation,
                event.key_id,
                name,
                ATTEMPTS,
                redact_text(repr(exc)),
            )
            return SinkFailure(name, exc, ATTEMPTS)
        if isinstance(event, ChildRotationEvent):
            self._children_delivered[name, event.name] = event.key_id
        else:
            self._delivered[name] = _Delivered(event.key_id, event.generation)
        logger.info(
            "published %s %d (key %s) to the key sink %s",
            what,
            event.generation,
            event.key_id,
            name,
        )
        return None
