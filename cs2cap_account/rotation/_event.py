"""What a rotation announces: `RotationEvent`, and `ChildRotationEvent` for one child key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from cs2cap_account._models import CreatedSubKey
from cs2cap_account._secret import SecretKey

__all__ = ["CallbackFailure", "ChildRotationEvent", "RotationEvent", "SinkFailure"]


@attrs.frozen
class CallbackFailure:
    """A rotation callback that still failed after its retries."""

    callback: str
    error: BaseException
    attempts: int


@attrs.frozen
class SinkFailure:
    """A key sink that still failed after its retries; it is published again later.

    `sink` is the sink's name (`KeySink.name`).
    """

    sink: str
    error: BaseException
    attempts: int


@attrs.frozen
class RotationEvent:
    """A new root key is in force: saved in the store and used by the client.

    `generation` counts rotations in the store. `sub_keys` holds the child keys
    re-created after the rotation, by name. `callback_errors` lists the callbacks that
    failed (the rotation stands regardless); `sub_key_errors` the children that could not
    be re-created; `sink_errors` the key sinks that could not be published to (each is
    published to again at the rotator's next check). `reason` is what started it:
    `"manual"` (or the caller's text), `"max_age"`, `"before_expiry"`, `"recovery"`, or
    `"adopted"` when another process rotated and this one took over its key.
    """

    new_key: SecretKey
    key_id: str
    previous_key_id: str | None
    generation: int
    rotated_at: dt.datetime
    reason: str
    sub_keys: Mapping[str, CreatedSubKey] = attrs.field(factory=dict)
    callback_errors: tuple[CallbackFailure, ...] = ()
    sub_key_errors: Mapping[str, BaseException] = attrs.field(factory=dict)
    sink_errors: tuple[SinkFailure, ...] = ()


@attrs.frozen
class ChildRotationEvent:
    """A child key was rotated on its own: its new key is saved in the store, and verified.

    The root key and the other children are untouched. `name` is the child's name,
    `key_id` its new id and `previous_key_id` the id it replaced (None when this process
    did not know the child before: it was first stored by another process).
    `generation` counts the child's keys in the store (see `StoredSubKey.generation`).
    `reason` is `"max_age"` (its age reached `child_max_age`), `"manual"` (or the
    caller's text), `"recovery"` (a rotation whose answer was lost, mended), or
    `"adopted"` when another process rotated it and this one took over its key.
    `callback_errors` and `sink_errors` are as in `RotationEvent`.
    """

    name: str
    new_key: SecretKey
    key_id: str
    previous_key_id: str | None
    generation: int
    rotated_at: dt.datetime
    reason: str
    callback_errors: tuple[CallbackFailure, ...] = ()
    sink_errors: tuple[SinkFailure, ...] = ()
