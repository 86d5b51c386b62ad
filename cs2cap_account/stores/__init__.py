"""Key stores: where the rotator keeps the current root key, durably, before anyone uses it."""

from cs2cap_account.stores._file import FileKeyStore
from cs2cap_account.stores._memory import MemoryKeyStore
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import ChildSpec, KeyRecord, PendingRotation, StoredSubKey

__all__ = [
    "ChildSpec",
    "FileKeyStore",
    "KeyRecord",
    "KeyStore",
    "MemoryKeyStore",
    "PendingRotation",
    "StoredSubKey",
]
