"""After a 401 on an adapted client: the key to send again with, never a reissue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cs2cap_account._secret import SecretKey

if TYPE_CHECKING:
    from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["checked_rotator", "key_after_refusal"]


def checked_rotator(rotator: object) -> KeyRotator:
    """`rotator` if it is a `KeyRotator`, else a clear `TypeError`."""
    from cs2cap_account.rotation._rotator import KeyRotator

    if not isinstance(rotator, KeyRotator):
        raise TypeError(f"needs a KeyRotator, not {type(rotator).__name__}")
    return rotator


async def key_after_refusal(rotator: KeyRotator, refused: SecretKey) -> SecretKey | None:
    """The key to resend a request with after `refused` got a 401, or None to let it stand.

    The rotator's key, if it moved on since the request was sent; otherwise the store is
    read once, as the rotator's own client does after a 401 (a rotation in flight here is
    waited for): a newer stored key is the answer. Never a reason to reissue.
    """
    if rotator.current_key != refused:
        return rotator.current_key
    stored = await rotator._after_refusal()
    newer = stored if stored is not None else rotator.current_key
    return None if newer == refused else newer
