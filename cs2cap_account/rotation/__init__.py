"""Root-key rotation: `KeyRotator`, the events it announces, its status, and its `Step`s."""

from cs2cap_account.rotation._event import CallbackFailure, RotationEvent, SinkFailure
from cs2cap_account.rotation._failure import (
    FailureEvent,
    KeyState,
    RotationFailed,
    RotationHalted,
    RotationRecovered,
    RotationStage,
)
from cs2cap_account.rotation._rotator import KeyRotator
from cs2cap_account.rotation._status import LastCheck, LastFailure, LastRotation, RotatorStatus
from cs2cap_account.rotation._steps import Step

__all__ = [
    "CallbackFailure",
    "FailureEvent",
    "KeyRotator",
    "KeyState",
    "LastCheck",
    "LastFailure",
    "LastRotation",
    "RotationEvent",
    "RotationFailed",
    "RotationHalted",
    "RotationRecovered",
    "RotationStage",
    "RotatorStatus",
    "SinkFailure",
    "Step",
]
