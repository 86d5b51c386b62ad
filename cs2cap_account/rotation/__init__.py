"""Key rotation: `KeyRotator`, the events it announces, its status, and its `Step`s.

It rotates the root key, and child keys on their own schedule.
"""

from cs2cap_account.rotation._event import (
    CallbackFailure,
    ChildRotationEvent,
    RotationEvent,
    SinkFailure,
)
from cs2cap_account.rotation._failure import (
    FailureEvent,
    KeyState,
    RotationFailed,
    RotationHalted,
    RotationRecovered,
    RotationStage,
)
from cs2cap_account.rotation._rotator import KeyRotator
from cs2cap_account.rotation._status import (
    ChildStatus,
    LastCheck,
    LastFailure,
    LastRotation,
    RotatorStatus,
)
from cs2cap_account.rotation._steps import Step

__all__ = [
    "CallbackFailure",
    "ChildRotationEvent",
    "ChildStatus",
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
