"""Async SDK for the CS2Cap Account API, with safe root-key rotation.

```python
from cs2cap_account import AccountClient

async with AccountClient() as client:   # key from CS2C_API_KEY
    info = await client.get_key()
```
"""

from cs2cap_account._client import AccountClient, SubKeys
from cs2cap_account._clock import Clock, FakeClock, SystemClock
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
from cs2cap_account._secret import SecretKey
from cs2cap_account._session import Hooks, RequestEvent, ResponseEvent, RetryEvent
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
    PermissionDeniedError,
    RateLimitError,
    ReissueOutcomeUnknownError,
    RotationError,
    StaleGenerationError,
    StoreError,
    SubKeyOutcomeUnknownError,
    UnprocessableEntityError,
    ValidationIssue,
)
from cs2cap_account.rotation import CallbackFailure, KeyRotator, RotationEvent
from cs2cap_account.stores import (
    FileKeyStore,
    KeyRecord,
    KeyStore,
    MemoryKeyStore,
    RedisKeyStore,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AccountClient",
    "AuthenticationError",
    "BadRequestError",
    "CS2CapError",
    "CallbackFailure",
    "Clock",
    "ConflictError",
    "CreatedSubKey",
    "FakeClock",
    "FileKeyStore",
    "Hooks",
    "InternalServerError",
    "KeyInfo",
    "KeyLostError",
    "KeyRecord",
    "KeyRotator",
    "KeyStore",
    "MalformedResponseError",
    "MemoryKeyStore",
    "NotFoundError",
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
    "SecretKey",
    "StaleGenerationError",
    "StoreError",
    "SubKeyDetail",
    "SubKeyOutcomeUnknownError",
    "SubKeyPage",
    "SubKeys",
    "SystemClock",
    "UnprocessableEntityError",
    "ValidationIssue",
    "__version__",
]
