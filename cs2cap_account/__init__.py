"""Async SDK for the CS2Cap Account API, with safe root-key rotation.

```python
from cs2cap_account import AccountClient

async with AccountClient() as client:   # key from CS2C_API_KEY
    info = await client.get_key()
```

Importing the package is cheap: each public name is imported from its module the first
time it is used (PEP 562), so `import cs2cap_account`, the command line's `--help` and a
program that needs only the errors never load aiohttp, cattrs or the rotator.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Final

from cs2cap_account._constants import LOG_ENV, __version__
from cs2cap_account._lazy import lazy_attributes

if os.environ.get(LOG_ENV):  # CS2C_LOG=debug|info: the SDK's logs on stderr, set up once
    importlib.import_module("cs2cap_account._logging").configure_from_env()

if TYPE_CHECKING:
    from cs2cap_account._client import (
        AccountClient,
        SubKeys,
    )
    from cs2cap_account._clock import (
        Clock,
        FakeClock,
        SystemClock,
    )
    from cs2cap_account._models import (
        CreatedSubKey,
        KeyInfo,
        Pagination,
        RateLimitInfo,
        ReissuedKey,
        RevokedSubKey,
        SubKeyDetail,
        SubKeyPage,
    )
    from cs2cap_account._secret import (
        SecretKey,
    )
    from cs2cap_account._session import (
        Hooks,
        RequestEvent,
        ResponseEvent,
        RetryEvent,
    )
    from cs2cap_account.errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConflictError,
        CS2CapError,
        InternalServerError,
        KeyLostError,
        MalformedResponseError,
        NotFoundError,
        OutcomeUnknownError,
        PermissionDeniedError,
        RateLimitError,
        ReissueOutcomeUnknownError,
        RotationError,
        StaleGenerationError,
        StoreError,
        SubKeyLostError,
        SubKeyOutcomeUnknownError,
        UnprocessableEntityError,
        ValidationIssue,
    )
    from cs2cap_account.rotation import (
        CallbackFailure,
        ChildRotationEvent,
        ChildStatus,
        FailureEvent,
        KeyRotator,
        KeyState,
        LastCheck,
        LastFailure,
        LastRotation,
        RotationEvent,
        RotationFailed,
        RotationHalted,
        RotationRecovered,
        RotationStage,
        RotatorStatus,
    )
    from cs2cap_account.stores import (
        FileKeyStore,
        KeyRecord,
        KeyStore,
        MemoryKeyStore,
        RedisKeyStore,
    )

# Every public name, and the module that defines it.
_LAZY: Final[dict[str, str]] = {
    "APIConnectionError": "cs2cap_account.errors",
    "APIStatusError": "cs2cap_account.errors",
    "APITimeoutError": "cs2cap_account.errors",
    "AccountClient": "cs2cap_account._client",
    "AuthenticationError": "cs2cap_account.errors",
    "BadRequestError": "cs2cap_account.errors",
    "CS2CapError": "cs2cap_account.errors",
    "CallbackFailure": "cs2cap_account.rotation",
    "ChildRotationEvent": "cs2cap_account.rotation",
    "ChildStatus": "cs2cap_account.rotation",
    "Clock": "cs2cap_account._clock",
    "ConflictError": "cs2cap_account.errors",
    "CreatedSubKey": "cs2cap_account._models",
    "FailureEvent": "cs2cap_account.rotation",
    "FakeClock": "cs2cap_account._clock",
    "FileKeyStore": "cs2cap_account.stores",
    "Hooks": "cs2cap_account._session",
    "InternalServerError": "cs2cap_account.errors",
    "KeyInfo": "cs2cap_account._models",
    "KeyLostError": "cs2cap_account.errors",
    "KeyRecord": "cs2cap_account.stores",
    "KeyRotator": "cs2cap_account.rotation",
    "KeyState": "cs2cap_account.rotation",
    "KeyStore": "cs2cap_account.stores",
    "LastCheck": "cs2cap_account.rotation",
    "LastFailure": "cs2cap_account.rotation",
    "LastRotation": "cs2cap_account.rotation",
    "MalformedResponseError": "cs2cap_account.errors",
    "MemoryKeyStore": "cs2cap_account.stores",
    "NotFoundError": "cs2cap_account.errors",
    "OutcomeUnknownError": "cs2cap_account.errors",
    "Pagination": "cs2cap_account._models",
    "PermissionDeniedError": "cs2cap_account.errors",
    "RateLimitError": "cs2cap_account.errors",
    "RateLimitInfo": "cs2cap_account._models",
    "RedisKeyStore": "cs2cap_account.stores",
    "ReissueOutcomeUnknownError": "cs2cap_account.errors",
    "ReissuedKey": "cs2cap_account._models",
    "RequestEvent": "cs2cap_account._session",
    "ResponseEvent": "cs2cap_account._session",
    "RetryEvent": "cs2cap_account._session",
    "RevokedSubKey": "cs2cap_account._models",
    "RotationError": "cs2cap_account.errors",
    "RotationEvent": "cs2cap_account.rotation",
    "RotationFailed": "cs2cap_account.rotation",
    "RotationHalted": "cs2cap_account.rotation",
    "RotationRecovered": "cs2cap_account.rotation",
    "RotationStage": "cs2cap_account.rotation",
    "RotatorStatus": "cs2cap_account.rotation",
    "SecretKey": "cs2cap_account._secret",
    "StaleGenerationError": "cs2cap_account.errors",
    "StoreError": "cs2cap_account.errors",
    "SubKeyDetail": "cs2cap_account._models",
    "SubKeyLostError": "cs2cap_account.errors",
    "SubKeyOutcomeUnknownError": "cs2cap_account.errors",
    "SubKeyPage": "cs2cap_account._models",
    "SubKeys": "cs2cap_account._client",
    "SystemClock": "cs2cap_account._clock",
    "UnprocessableEntityError": "cs2cap_account.errors",
    "ValidationIssue": "cs2cap_account.errors",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AccountClient",
    "AuthenticationError",
    "BadRequestError",
    "CS2CapError",
    "CallbackFailure",
    "ChildRotationEvent",
    "ChildStatus",
    "Clock",
    "ConflictError",
    "CreatedSubKey",
    "FailureEvent",
    "FakeClock",
    "FileKeyStore",
    "Hooks",
    "InternalServerError",
    "KeyInfo",
    "KeyLostError",
    "KeyRecord",
    "KeyRotator",
    "KeyState",
    "KeyStore",
    "LastCheck",
    "LastFailure",
    "LastRotation",
    "MalformedResponseError",
    "MemoryKeyStore",
    "NotFoundError",
    "OutcomeUnknownError",
    "Pagination",
    "PermissionDeniedError",
    "RateLimitError",
    "RateLimitInfo",
    "RedisKeyStore",
    "ReissueOutcomeUnknownError",
    "ReissuedKey",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "RevokedSubKey",
    "RotationError",
    "RotationEvent",
    "RotationFailed",
    "RotationHalted",
    "RotationRecovered",
    "RotationStage",
    "RotatorStatus",
    "SecretKey",
    "StaleGenerationError",
    "StoreError",
    "SubKeyDetail",
    "SubKeyLostError",
    "SubKeyOutcomeUnknownError",
    "SubKeyPage",
    "SubKeys",
    "SystemClock",
    "UnprocessableEntityError",
    "ValidationIssue",
    "__version__",
]


__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
