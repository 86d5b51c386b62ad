"""Recovering a lost key: reissuing with the recovery token (a session JWT).

A reissue whose response was lost has revoked the old root key, and its new key exists
nowhere: only a credential that is not a root key can reissue again. The recovery sends
the token through a copy of the rotator's client that shares everything else (session,
hooks, timeouts, retries), and counts every reissue that replaced a lost key.
"""

from __future__ import annotations

import logging
from typing import Final

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._models import ReissuedKey
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import (
    AuthenticationError,
    CS2CapError,
    KeyLostError,
    ReissueOutcomeUnknownError,
    RotationError,
)

__all__ = ["Recovery"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

LOST_WITHOUT_RECOVERY: Final = (
    "The root key {key_id} was reissued, but the response carrying the new key was lost: "
    "the old key is revoked and the new one is unknown, so no key works now. To recover: "
    "reissue the root key with a session JWT (e.g. `AccountClient(session_token=...)"
    ".reissue_key()`, or from the CS2Cap dashboard) and put the new key in the store "
    "(`cs2cap-account key reissue --store PATH` does both). To let the rotator do this "
    "itself next time, pass recovery_token=<session JWT> to KeyRotator. It will not "
    "reissue again until a new key is in the store."
)

EXPIRED_WITHOUT_RECOVERY: Final = (
    "The root key {key_id} has expired: the API refuses it (AUTH_API_KEY_EXPIRED), and an "
    "expired key cannot reissue itself. Nothing was reissued. To recover: reissue the root "
    "key with a session JWT (e.g. `AccountClient(session_token=...).reissue_key()`, or "
    "from the CS2Cap dashboard) and put the new key in the store (`cs2cap-account key "
    "reissue --store PATH` does both). To let the rotator do this itself next time, pass "
    "recovery_token=<session JWT> to KeyRotator."
)


def _rescuer(client: AccountClient, token: SecretKey) -> AccountClient:
    """A copy of `client` sending `token` instead of the root key, sharing the rest."""
    return client.with_credential(session_token=token)


@attrs.define
class Recovery:
    """The recovery token of one rotator, and how many lost keys it replaced."""

    _client: AccountClient
    _token: SecretKey | None
    recoveries: int = 0
    # The root key id in force when a recovery ended not knowing if its reissue landed.
    _unresolved: str | None = None

    def halt(self, previous_key_id: str) -> RotationError | None:
        """The error to halt with after `previous_key_id`'s successor was lost, if any.

        None if the token can recover the key; otherwise the error that says how to.
        """
        if self._token is not None:
            return None
        return RotationError(
            LOST_WITHOUT_RECOVERY.format(key_id=previous_key_id), previous_key_id=previous_key_id
        )

    def expired(self, key_id: str) -> RotationError | None:
        """The error to stop with when the root key `key_id` expired, if the token is missing.

        None if the token can replace the key.
        """
        if self._token is not None:
            return None
        return RotationError(EXPIRED_WITHOUT_RECOVERY.format(key_id=key_id), previous_key_id=key_id)

    async def id_of_expired(self, refused: AuthenticationError) -> str:
        """The id of the root key in force, which the client's key (`refused`) cannot tell.

        An expired key is refused even by `GET /account/key`; the token can still read it.
        Without the token, the `RotationError` that says how to recover.
        """
        if self._token is None:
            raise RotationError(
                EXPIRED_WITHOUT_RECOVERY.format(key_id="in use"), previous_key_id=None
            ) from refused
        async with _rescuer(self._client, self._token) as rescuer:
            return (await rescuer.get_key()).id

    async def replace_expired(self, key_id: str) -> ReissuedKey:
        """Reissue the expired root key `key_id` with the token (not counted as a recovery).

        `RotationError` if that fails; the journal stays open and the next check retries.
        """
        assert self._token is not None
        logger.warning("the root key %s has expired; reissuing it with the recovery token", key_id)
        async with _rescuer(self._client, self._token) as rescuer:
            lost_ids: list[str] = []
            try:
                return await rescuer.reissue_key(
                    use_new_key=False, on_lost=lambda info: lost_ids.append(info.id)
                )
            except CS2CapError as exc:
                raise RotationError(
                    f"the root key {key_id} has expired and reissuing it with the recovery "
                    f"token failed ({exc}); the next check retries",
                    previous_key_id=key_id,
                ) from exc
            finally:
                self.recoveries += len(lost_ids)

    async def active_key_used(self) -> bool:
        """Whether the root key in force has authenticated a call since it was issued.

        Asked with the token, when a store reset took the journal with it: a key that
        was used is held by some process (which writes it back), not lost. Without the
        token, or without an answer, it counts as used: nothing is reissued on a guess.
        """
        if self._token is None:
            return True
        async with _rescuer(self._client, self._token) as rescuer:
            try:
                return (await rescuer.get_key()).last_used_at is not None
            except CS2CapError:
                return True

    async def reissue(self, previous_key_id: str, lost: KeyLostError) -> ReissuedKey:
        """Reissue with the token; `RotationError` if that fails (the journal stays open).

        Every reissue that takes effect here replaces a lost key and is counted as a
        recovery: the one that succeeds, each whose response was lost in turn, and one
        from an earlier recovery that ended not knowing, if the active key moved since.
        """
        assert self._token is not None
        logger.warning("the new root key was lost (%s); recovering with the recovery token", lost)
        async with _rescuer(self._client, self._token) as rescuer:
            lost_ids: list[str] = []
            try:
                active = (await rescuer.get_key()).id
                if self._unresolved not in (None, active):
                    self.recoveries += 1
                self._unresolved = None
                new = await rescuer.reissue_key(
                    use_new_key=False, on_lost=lambda info: lost_ids.append(info.id)
                )
            except CS2CapError as exc:
                if isinstance(exc, ReissueOutcomeUnknownError):
                    self._unresolved = lost_ids[-1] if lost_ids else active
                raise RotationError(
                    f"the root key {previous_key_id} was lost and recovering it with the "
                    f"recovery token failed ({exc}); the journal stays open, the next check "
                    "retries",
                    previous_key_id=previous_key_id,
                ) from exc
            finally:
                self.recoveries += len(lost_ids)
        self.recoveries += 1
        return new
