"""`KeySink`: somewhere a new root key is delivered to, and `SinkError`, its failure.

`ChildKeySink` is a sink that takes child keys too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cs2cap_account.errors import CS2CapError

if TYPE_CHECKING:
    from cs2cap_account.rotation._event import ChildRotationEvent, RotationEvent

__all__ = ["ChildKeySink", "KeySink", "SinkError", "sink_name"]


@runtime_checkable
class KeySink(Protocol):
    """Where a `KeyRotator` delivers each new root key, after it is saved and verified.

    ```python
    class Webhook:
        name = "webhook:deploys"

        async def publish(self, event: RotationEvent) -> None:
            ...  # put event.new_key.reveal() where its consumers read it
    ```

    `publish(event)` must be idempotent for one key: the rotator publishes a key again
    when a sink failed, when it restarts, and when it adopts a key another process made,
    and a publish whose answer was lost is retried. Raise to report a failure; the
    rotation stands regardless. A sink may have a `name` (a str, unique among the
    rotator's sinks), which names it in logs, `event.sink_errors` and the status; without
    one its class name is used.
    """

    async def publish(self, event: RotationEvent) -> None:
        """Deliver `event.new_key` (generation `event.generation`); raise on failure."""


@runtime_checkable
class ChildKeySink(KeySink, Protocol):
    """A `KeySink` that also delivers child keys rotated on their own schedule.

    A sink chooses to publish children by having `publish_child(event)`; a sink without
    it is given root keys only. `publish_child` must be idempotent for one child key,
    like `publish`: a child is published again after a failure, at a restart, and when
    this process adopts a child another process rotated.
    """

    async def publish_child(self, event: ChildRotationEvent) -> None:
        """Deliver `event.new_key`, the child `event.name`'s new key; raise on failure."""


class SinkError(CS2CapError):
    """A key sink could not deliver the key (its message never holds the key)."""


def sink_name(sink: object) -> str:
    """The name a sink goes by: its `name` attribute, or its class's name."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return name
    return type(sink).__qualname__
