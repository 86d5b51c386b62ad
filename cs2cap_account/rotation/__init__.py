"""Root-key rotation: `KeyRotator` and the `RotationEvent` it announces."""

from cs2cap_account.rotation._event import CallbackFailure, RotationEvent
from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["CallbackFailure", "KeyRotator", "RotationEvent"]
