"""Encryption at rest for key stores: the stored record is a Fernet token, not plaintext.

`cryptography` is imported only when a cipher is made (`pip install "cs2cap-account[crypto]"`).
A store given `cipher=` seals every record it writes and refuses to read one it cannot open;
a store without a cipher refuses an encrypted record with a message saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TypeAlias

from cs2cap_account.errors import StoreError
from cs2cap_account.stores._record import RecordBytes

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = [
    "CipherKey",
    "RecordCipher",
    "make_cipher",
    "open_record_bytes",
    "seal_record_bytes",
]

# One Fernet key (`Fernet.generate_key()`), or several: the first encrypts, any decrypts,
# so the cipher key itself can be rotated.
CipherKey: TypeAlias = str | bytes | Sequence[str | bytes]

# Every Fernet token is url-safe base64 of a version byte 0x80 and a timestamp: it starts so.
_FERNET_PREFIX: Final = b"gAAAAA"


class RecordCipher:
    """Seals and opens a store's record bytes with Fernet (AES-128-CBC + HMAC-SHA256).

    A token that was altered, or made with another key, does not open: `StoreError`.
    Neither the key nor any plaintext appears in its repr or its errors.
    """

    __slots__ = ("_fernet",)

    def __init__(self, key: CipherKey) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                'encrypting a key store needs cryptography: pip install "cs2cap-account[crypto]"'
            ) from exc
        keys = [key] if isinstance(key, (str, bytes)) else list(key)
        if not keys:
            raise ValueError("cipher needs at least one Fernet key")
        try:
            self._fernet: MultiFernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            raise ValueError(
                "cipher must be a Fernet key (32 url-safe base64-encoded bytes, as made by "
                "cryptography.fernet.Fernet.generate_key()), or a list of them"
            ) from None

    def __repr__(self) -> str:
        return "RecordCipher(<hidden>)"

    def seal(self, data: bytes) -> bytes:
        """Encrypt and authenticate `data`."""
        return self._fernet.encrypt(data)

    def open(self, token: bytes, *, source: str) -> bytes:
        """Decrypt a token made by `seal`, or raise `StoreError` naming `source`."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise StoreError(
                f"{source} could not be decrypted with the cipher key given: the key is "
                "wrong, or the stored record was altered"
            ) from None


def make_cipher(key: CipherKey | RecordCipher | None) -> RecordCipher | None:
    """A `RecordCipher` for `key` (None: no encryption)."""
    if key is None or isinstance(key, RecordCipher):
        return key
    return RecordCipher(key)


def seal_record_bytes(cipher: RecordCipher | None, data: RecordBytes) -> RecordBytes:
    """What a store writes for the record bytes `data` (shown by length only)."""
    return data if cipher is None else RecordBytes(cipher.seal(data))


def open_record_bytes(cipher: RecordCipher | None, data: bytes, *, source: str) -> bytes:
    """The record bytes in what a store read, checking it is (or is not) encrypted."""
    encrypted = data.lstrip().startswith(_FERNET_PREFIX)
    if cipher is None:
        if encrypted:
            raise StoreError(f"{source} holds an encrypted record: pass the store its cipher= key")
        return data
    if not encrypted:
        raise StoreError(
            f"{source} holds an unencrypted record, but the store was given a cipher: "
            "refusing it. To encrypt an existing store, load it without cipher= and save "
            "the record through a store with one."
        )
    return cipher.open(data.strip(), source=source)
