"""Root-key rotation: `KeyRotator`, the `RotationEvent` it announces, and its `Step`s."""

from cs2cap_account.rotation._event import CallbackFailure, RotationEvent, SinkFailure
from cs2cap_account.rotation._rotator import KeyRotator
from cs2cap_account.rotation._steps import Step

__all__ = ["CallbackFailure", "KeyRotator", "RotationEvent", "SinkFailure", "Step"]
