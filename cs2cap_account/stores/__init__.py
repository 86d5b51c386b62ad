"""Key stores: where the rotator keeps the current root key, durably, before anyone uses it.

`RedisKeyStore` is importable from here at no cost: `redis` itself is imported only when
one is made.
"""

from cs2cap_account.stores._file import FileKeyStore
from cs2cap_account.stores._memory import MemoryKeyStore
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import ChildSpec, KeyRecord, PendingRotation, StoredSubKey

# Imports nothing from redis: that happens when a RedisKeyStore is made.
from cs2cap_account.stores._redis import RedisKeyStore

__all__ = [
    "ChildSpec",
    "FileKeyStore",
    "KeyRecord",
    "KeyStore",
    "MemoryKeyStore",
    "PendingRotation",
    "RedisKeyStore",
    "StoredSubKey",
]
