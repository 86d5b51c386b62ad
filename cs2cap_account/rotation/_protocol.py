"""The rotation protocol: nine steps from the journal to the announcement.

`Protocol.rotate()` reads top to bottom:

1-2. journal "pending" in the store, and read it back: the store is proved writable and
     readable (through its own parser), so a broken store stops the rotation before
     anything is revoked;
3.   snapshot the child keys into the journal (with `recreate_sub_keys`);
4-6. reissue, save the new key (generation + 1), switch the client: shielded together
     from cancellation;
7.   verify: `GET /account/key` with the new key;
8.   re-create the child keys, saving each;
9.   announce (callbacks, then `events()`), then close the journal.

Steps 7-9 (`complete()`) also finish a journal left open by a crash; `recover()` mends
a reissue whose key was lost. Which of these a stored record calls for is decided in
`_journal`; the rotator's lock and catch-up come before `rotate()` (in `_rotator`).
"""

from __future__ import annotations

import logging
from typing import Final

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._clock import Clock
from cs2cap_account._models import CreatedSubKey, ReissuedKey
from cs2cap_account._retry import retry_on, retrying
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import (
    AuthenticationError,
    CS2CapError,
    KeyLostError,
    ReissueOutcomeUnknownError,
    RotationError,
    StaleGenerationError,
    StoreError,
)
from cs2cap_account.rotation._announce import Announcer
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._journal import Next, Probe, UnsavedKey, next_step
from cs2cap_account.rotation._recovery import Recovery
from cs2cap_account.rotation._steps import Step, StepHooks
from cs2cap_account.rotation._store_io import StoreIO
from cs2cap_account.rotation._tasks import finish_even_if_cancelled
from cs2cap_account.stores._record import (
    ChildSpec,
    KeyRecord,
    PendingRotation,
    StoredSubKey,
    successor,
)

__all__ = ["KEY_EXPIRED", "Protocol", "authenticates", "key_expired"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

_VERIFY_ATTEMPTS: Final = 5
KEY_EXPIRED: Final = "AUTH_API_KEY_EXPIRED"


def key_expired(error: BaseException) -> bool:
    """Whether `error` is the API refusing a key because it expired."""
    return isinstance(error, AuthenticationError) and error.code == KEY_EXPIRED


async def authenticates(
    client: AccountClient, clock: Clock, key: SecretKey, key_id: str, *, what: str
) -> bool:
    """Whether a new key authenticates: `GET /account/key` sent with it.

    A 401 may be propagation delay: retried, `_VERIFY_ATTEMPTS` tries in all. No answer
    (network, 5xx) counts as passed: the key was just issued and saved, and the next call
    made with it will tell. `what` names the key in the logs ("root key", "child key").
    """
    try:
        async for attempt in retrying(
            attempts=_VERIFY_ATTEMPTS, clock=clock, retry=retry_on(AuthenticationError)
        ):
            with attempt:
                info = await client.get_key(key=key)
    except AuthenticationError as exc:
        logger.error("the new %s %s does not authenticate: %s", what, key_id, exc)
        return False
    except CS2CapError as exc:
        logger.warning("could not verify the new %s %s (%s); going on", what, key_id, exc)
        return True
    if info.id != key_id:
        logger.warning("the new %s reports id %s, not %s", what, info.id, key_id)
    return True


@attrs.define
class Protocol:
    """The steps of a rotation, over one client, store and process's holdings."""

    _client: AccountClient
    _clock: Clock
    _io: StoreIO
    _holding: Holding
    _recovery: Recovery
    _announcer: Announcer
    _steps: StepHooks
    _recreate_sub_keys: bool

    async def rotate(self, record: KeyRecord, reason: str) -> RotationEvent:
        """Rotate away from the key `record` holds (the store's lock is held)."""
        # 1-3. Journal, with the children about to be revoked.
        record = await self._journal(record, reason)
        await self._steps.passed(Step.JOURNALED)
        # 4-6. Reissue, save, switch: no cancellation can come between them.
        record = await finish_even_if_cancelled(self._reissue_and_save(record))
        # 7-9. Verify, re-create the children, announce, close the journal.
        return await self.complete(record, fresh=True)

    async def _journal(
        self, record: KeyRecord, reason: str, children: tuple[ChildSpec, ...] | None = None
    ) -> KeyRecord:
        """1-3. Journal "pending" (proving the store writable), snapshot the children.

        The children are listed with the root key, unless given (`children`).
        """
        pending = PendingRotation(
            from_generation=record.generation,
            previous_key_id=record.key_id,
            reason=reason,
            started_at=self._clock.now(),
        )
        unchanged = f"nothing was reissued; the root key {record.key_id} is still in force"
        try:
            journaled = await self._io.write(
                attrs.evolve(record, pending=pending), record.generation
            )
        except StoreError as exc:
            raise RotationError(
                f"the key store cannot be written ({exc}); {unchanged}",
                previous_key_id=record.key_id,
            ) from exc
        await self._prove_readable(journaled, record, unchanged)
        if not self._recreate_sub_keys:
            return journaled
        if children is not None:
            pending = attrs.evolve(pending, children=children)
            return await self._io.write(attrs.evolve(record, pending=pending), record.generation)
        try:
            listed = [
                ChildSpec(
                    name=(name := detail.key.name or detail.key.id),
                    quota_requests_per_month_override=detail.key.quota_requests_per_month_override,
                    rate_requests_per_minute_override=detail.key.rate_requests_per_minute_override,
                    generation=_stored_generation(record, name),
                )
                async for detail in self._client.sub_keys.iterate()
            ]
            pending = attrs.evolve(pending, children=tuple(listed))
            return await self._io.write(attrs.evolve(record, pending=pending), record.generation)
        except CS2CapError as exc:  # StoreError included
            if key_expired(exc):  # its children are out of reach: the new key starts bare
                logger.warning("the expired root key cannot list its child keys (%s)", exc)
                return journaled
            await self._io.write(record, record.generation)  # close the journal again
            raise RotationError(
                f"could not record the child keys ({exc}); {unchanged}",
                previous_key_id=record.key_id,
            ) from exc

    async def _prove_readable(
        self, journaled: KeyRecord, record: KeyRecord, unchanged: str
    ) -> None:
        """2. The journal reads back through the store's own parser as it was written.

        A store that takes a write and cannot give it back (unreadable file, lossy
        encoding) would take the new key too and lose it: stop before the reissue.
        """
        try:
            loaded = await self._io.load()
        except Exception as exc:  # whatever the store's reading raises, nothing is lost yet
            problem = f"the journal written to the key store cannot be read back ({exc})"
        else:
            if loaded == journaled:
                return
            problem = "the key store gave back something other than the journal written to it"
        try:
            await self._io.write(record, record.generation)  # close the journal again
        except StoreError as exc:
            logger.warning("could not close the unreadable journal (%s)", exc)
        raise RotationError(f"{problem}; {unchanged}", previous_key_id=record.key_id)

    async def _reissue_and_save(self, record: KeyRecord) -> KeyRecord:
        """4-6. Reissue, then save the new key and switch to it (or recover a lost one)."""
        assert record.pending is not None
        previous = record.pending.previous_key_id
        try:
            new = await self._client.reissue_key(use_new_key=False)
        except KeyLostError as lost:
            return await self.recover(record, lost)
        except ReissueOutcomeUnknownError as exc:
            raise RotationError(
                f"could not tell whether the root key {previous} was reissued ({exc}). The "
                "journal stays open: the next check probes the key and finishes or recovers.",
                previous_key_id=previous,
            ) from exc
        except CS2CapError as exc:
            if key_expired(exc):
                return await self._replace_expired(record, exc)
            await self._io.close_journal(record)
            raise RotationError(
                f"the reissue failed ({exc}); nothing was revoked, the root key {previous} "
                "is still in force",
                previous_key_id=previous,
            ) from exc
        await self._steps.passed(Step.REISSUED)
        return await self.save_new_key(record, new.key, new.id)

    async def _replace_expired(self, record: KeyRecord, expired: CS2CapError) -> KeyRecord:
        """4. The root key expired, so it cannot reissue itself: reissue with the token.

        Without a recovery token, the journal is closed and `RotationError` says how to
        get a new key; no key works until then.
        """
        assert record.pending is not None
        previous = record.pending.previous_key_id
        halt = self._recovery.expired(previous)
        if halt is not None:
            await self._io.close_journal(record)
            raise halt from expired
        new = await self._recovery.replace_expired(previous)
        await self._steps.passed(Step.REISSUED)
        return await self.save_new_key(record, new.key, new.id)

    async def recover(self, record: KeyRecord, lost: KeyLostError) -> KeyRecord:
        """The reissue from `record` happened and its key was lost: recover, or halt.

        With the recovery token, reissue again and save that key; without, halt.
        """
        assert record.pending is not None
        previous = record.pending.previous_key_id
        halt = self._recovery.halt(previous)
        if halt is not None:
            self._holding.halted = halt
            raise halt from lost
        new = await self._recovery.reissue(previous, lost)
        return await self.save_new_key(record, new.key, new.id)

    async def recover_revoked(self, record: KeyRecord) -> RotationEvent | None:
        """The stored key, held here, is refused and no journal is open: recover if lost.

        A reissue no rotation of this store made revoked it: most often a recovery's
        session-JWT reissue whose first attempt timed out, was found not to have happened,
        and landed after the retry, revoking the key the retry returned (and saved). The
        key in force, if it ever authenticated a call, is held by someone: None, and the
        refusal stands. If it never did, it is lost: journaled and recovered with the
        token like a lost reissue, then verified, its children re-created (by the names
        the store recorded) and announced. Without the token, None: the refusal stands.
        """
        previous = record.key_id
        if self._recovery.halt(previous) is not None:
            logger.error(
                "the root key %s was revoked by a reissue no rotation of this store made, "
                "and there is no recovery token to replace it: store a new key",
                previous,
            )
            return None
        if await self._recovery.active_key_used():
            logger.warning(
                "the root key %s was revoked and the key in force was used since; "
                "waiting for whoever holds it to store it",
                previous,
            )
            return None
        logger.warning(
            "the root key %s was revoked by a reissue no rotation of this store made, and "
            "the key in force was never used: recovering with the recovery token",
            previous,
        )
        # Its children were revoked with it, and the revoked key cannot list them.
        children = tuple(
            ChildSpec(name=name, generation=entry.generation)
            for name, entry in record.sub_keys.items()
        )
        journaled = await self._journal(record, "recovery", children)
        lost = KeyLostError(
            f"the root key {previous} was revoked by a reissue whose key no one received",
            previous_key_id=previous,
        )
        saved = await finish_even_if_cancelled(self.recover(journaled, lost))
        return await self.complete(saved)

    def halt_for(self, previous_key_id: str) -> RotationError | None:
        """Without the recovery token, halt (and return why) after a lost key."""
        halt = self._recovery.halt(previous_key_id)
        if halt is not None:
            self._holding.halted = halt
        return halt

    async def id_of_expired(self, refused: AuthenticationError) -> str:
        """The id of the expired root key in force, read with the token (see `Recovery`)."""
        return await self._recovery.id_of_expired(refused)

    async def active_key_used(self) -> bool:
        """Whether the key in force was used since its reissue (so it is not lost)."""
        return await self._recovery.active_key_used()

    async def reissue_lost(self, previous_key_id: str, lost: KeyLostError) -> ReissuedKey:
        """Reissue with the recovery token, replacing a lost key."""
        return await self._recovery.reissue(previous_key_id, lost)

    async def save_new_key(
        self,
        record: KeyRecord,
        key: SecretKey,
        key_id: str,
        pending: PendingRotation | None = None,
    ) -> KeyRecord:
        """5-6. Save the new key as the generation after `record`, durably, then switch.

        `pending` is the journal to carry (by default `record`'s, rebased onto it). Fenced
        off (the store moved on), the key is kept aside in the store, or written back if
        the store was emptied; unsaveable (the store fails), it is held in memory and
        saved at the next look. Never dropped.
        """
        journal = record.pending if pending is None else pending
        if journal is not None:
            journal = attrs.evolve(journal, from_generation=record.generation)
        saved = attrs.evolve(successor(record, key, key_id, at=self._clock.now()), pending=journal)
        unsaved = UnsavedKey(saved, follows_key_id=record.key_id)
        try:
            await self._io.write(saved, record.generation)
        except StaleGenerationError as exc:
            return await self._fenced(record, unsaved, exc)
        except StoreError as exc:
            raise self._unsaveable(unsaved, exc) from exc
        self._holding.hold(saved)
        await self._steps.passed(Step.SAVED)
        return saved

    async def confirm_saved(self, record: KeyRecord) -> KeyRecord:
        """Write a stored new key again, as it is, before finishing its rotation.

        The save that stored it may not have been confirmed (a store that waits for
        replicas raised, the rotation stopped): no one learns of a key before a save of
        it returns. Unconfirmed again, the key stays held here if it was, and
        `RotationError` says the next check tries again.
        """
        try:
            return await self._io.write(record, record.generation)
        except StoreError as exc:
            unsaved = self._holding.unsaved
            if unsaved is not None and unsaved.record.key_id == record.key_id:
                raise self._unsaveable(unsaved, exc) from exc
            raise RotationError(
                f"the new key {record.key_id} is stored but the store could not confirm it "
                f"({exc}); it is announced once a save of it is, at the next check",
                previous_key_id=record.pending.previous_key_id if record.pending else None,
            ) from exc

    async def write_back(self, unsaved: UnsavedKey) -> KeyRecord:
        """Write a held key back into an emptied store, once, compare-and-set on empty.

        As generation 1 of a new lineage, with its rotation's journal, so steps 7-9 follow.
        """
        pending = unsaved.record.pending
        if pending is not None:
            pending = attrs.evolve(pending, from_generation=0)
        key, key_id = unsaved.record.key, unsaved.record.key_id
        saved = attrs.evolve(successor(None, key, key_id, at=self._clock.now()), pending=pending)
        logger.warning("the key store was emptied; writing the new key %s back", key_id)
        try:
            await self._io.write(saved, None)
        except StoreError as exc:  # StaleGenerationError included: another process wrote
            raise self._unsaveable(unsaved, exc) from exc
        self._holding.hold(saved)
        await self._steps.passed(Step.SAVED)
        return saved

    async def _fenced(
        self, record: KeyRecord, unsaved: UnsavedKey, exc: StaleGenerationError
    ) -> KeyRecord:
        """The save of `unsaved` was fenced off: write it back, or keep it aside.

        Which one is for the record now stored to say (an empty store: write it back).
        """
        key_id = unsaved.record.key_id
        try:
            latest = await self._io.load()
        except StoreError as failed:
            raise self._unsaveable(unsaved, failed) from exc
        # A key reissued a moment ago, under the lock, works (its verification follows).
        fresh = Probe.HELD_WORKS if latest is None else Probe.NOT_PROBED
        held = attrs.evolve(self._holding.held(), unsaved=unsaved)
        if next_step(latest, held, fresh) is Next.WRITE_BACK_HELD:
            return await self.write_back(unsaved)
        try:
            await self._io.keep_aside(unsaved.record.key)
        except (StoreError, RotationError) as aside:
            raise self._unsaveable(unsaved, aside) from exc
        # Held here too: the store that keeps it aside may be emptied next (a reset), and
        # the next look probes it and saves it over the stored key if it is the live one.
        self._holding.hold_unsaved(unsaved)
        raise RotationError(
            f"the new key {key_id} was fenced off: the store moved to generation "
            f"{exc.stored_generation} meanwhile. The key is kept aside in the store and held "
            "here, since it may be the only live one; the next check probes it.",
            previous_key_id=record.key_id,
        ) from exc

    def _unsaveable(self, unsaved: UnsavedKey, exc: BaseException) -> RotationError:
        """Hold `unsaved` in memory (saved at the next look), and say so."""
        self._holding.hold_unsaved(unsaved)
        return RotationError(
            f"the new key {unsaved.record.key_id} could not be saved ({exc}). This process "
            "uses it and saves it at the next check; other processes hold the revoked key.",
            previous_key_id=unsaved.follows_key_id,
        )

    async def complete(self, record: KeyRecord, *, fresh: bool = False) -> RotationEvent:
        """7-9. Verify the new key, re-create the children, announce, close the journal.

        `fresh`: this process reissued the key a moment ago, so no earlier attempt of
        this rotation can have created a child key (no orphans to look for).
        """
        pending = record.pending
        assert pending is not None
        self._holding.hold(record)
        # 7. Verify.
        if not await self._verify(record):
            # The saved key never authenticated: a reissue landed after it (e.g. a timed-out
            # attempt completing late). Only the recovery token can mend that, unless the
            # store holds another key by now (a reset store written again by a process
            # that recovered): that reissue is the one that landed, and it is adopted.
            await self._unless_superseded(record)
            lost = KeyLostError(
                f"the new root key {record.key_id} does not authenticate",
                previous_key_id=record.key_id,
            )
            record = await finish_even_if_cancelled(self.recover(record, lost))
            if not await self._verify(record):
                raise RotationError(
                    f"the recovered root key {record.key_id} does not authenticate either",
                    previous_key_id=pending.previous_key_id,
                )
        await self._steps.passed(Step.VERIFIED)
        # 8. Re-create the children.
        record, made, failed = await self._recreate_children(record, pending.children, fresh=fresh)
        self._holding.know_children(record)  # they come with this event, not as news
        await self._steps.passed(Step.CHILDREN)
        # 9. Announce, then close the journal.
        event = RotationEvent(
            new_key=record.key,
            key_id=record.key_id,
            previous_key_id=pending.previous_key_id,
            generation=record.generation,
            rotated_at=record.saved_at,
            reason=pending.reason,
            sub_keys=made,
            sub_key_errors=failed,
        )
        event = await self._announcer.announce(event)
        await self._steps.passed(Step.ANNOUNCED)
        try:
            await self._io.close_journal(record)
        except StoreError as exc:
            logger.warning("could not close the rotation journal (%s); the next check will", exc)
        return event

    async def _unless_superseded(self, record: KeyRecord) -> None:
        """Raise `RotationError` if the store holds another key than `record`'s now."""
        try:
            latest = await self._io.load()
        except StoreError:
            return
        if latest is not None and latest.key_id != record.key_id:
            raise RotationError(
                f"the new root key {record.key_id} does not authenticate, and the store holds "
                f"another key, {latest.key_id}, by now: it is adopted at the next look",
                previous_key_id=record.key_id,
            )

    async def _verify(self, record: KeyRecord) -> bool:
        """7. Whether the new key authenticates (see `authenticates`)."""
        return await authenticates(
            self._client, self._clock, record.key, record.key_id, what="root key"
        )

    async def _recreate_children(
        self, record: KeyRecord, children: tuple[ChildSpec, ...], *, fresh: bool = False
    ) -> tuple[KeyRecord, dict[str, CreatedSubKey], dict[str, BaseException]]:
        """8. Re-create each child key with its name and overrides, saving each.

        A child that an interrupted attempt created but never saved (its plaintext went
        with the attempt) is reissued, not created again, so no orphan keeps its name.
        """
        made: dict[str, CreatedSubKey] = {}
        failed: dict[str, BaseException] = {}
        orphans = {} if fresh else await self._orphaned_children(record, children)
        for spec in children:
            stored = record.sub_keys.get(spec.name)
            try:
                if stored is not None:  # re-created before an interruption
                    detail = await self._client.sub_keys.get(stored.id)
                    made[spec.name] = CreatedSubKey(key=stored.key, key_info=detail.key)
                    continue
                if spec.name in orphans:
                    child = await self._client.sub_keys.reissue(orphans[spec.name])
                else:
                    child = await self._client.sub_keys.create(
                        spec.name,
                        quota_requests_per_month_override=spec.quota_requests_per_month_override,
                        rate_requests_per_minute_override=spec.rate_requests_per_minute_override,
                    )
            except CS2CapError as exc:
                logger.error("could not re-create child key %r: %s", spec.name, exc)
                failed[spec.name] = exc
                continue
            made[spec.name] = child
            entry = StoredSubKey(
                key=child.key,
                id=child.key_info.id,
                info=child.key_info,
                generation=spec.generation + 1,
            )
            try:
                record = await self._io.write(
                    attrs.evolve(record, sub_keys={**record.sub_keys, spec.name: entry}),
                    record.generation,
                )
            except StoreError as exc:
                logger.error("could not save child key %r: %s", spec.name, exc)
                failed[spec.name] = exc
        return record, made, failed

    async def _orphaned_children(
        self, record: KeyRecord, children: tuple[ChildSpec, ...]
    ) -> dict[str, str]:
        """Active child keys, id by name, to re-create yet not in the store: orphans.

        The reissue revoked every older child, so a child with such a name was created by
        this rotation, in an attempt interrupted before it could save the key.
        """
        missing = {spec.name for spec in children if spec.name not in record.sub_keys}
        if not missing:
            return {}
        saved = {entry.id for entry in record.sub_keys.values()}
        try:
            return {
                detail.key.name: detail.key.id
                async for detail in self._client.sub_keys.iterate()
                if detail.key.name in missing and detail.key.id not in saved
            }
        except CS2CapError as exc:
            logger.warning("could not list the child keys (%s); creating them afresh", exc)
            return {}


def _stored_generation(record: KeyRecord, name: str) -> int:
    """The generation of the child stored under `name` (0 if none is)."""
    entry = record.sub_keys.get(name)
    return 0 if entry is None else entry.generation
