"""Catching up with the store: carrying out the step the journal's reading names.

`_journal` decides; this room does the I/O of each step: it loads the record, asks
`next_step()` (or, after a 401 on an ordinary call, `after_refusal()`), probes keys when
told to, and saves, adopts, promotes, recovers or completes through the protocol. It
never reissues on its own: only a lost key (with the recovery token) leads to a reissue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Final

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._clock import Clock
from cs2cap_account._models import CreatedSubKey, KeyInfo
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import AuthenticationError, CS2CapError, KeyLostError
from cs2cap_account.rotation._announce import Announcer
from cs2cap_account.rotation._child_rotation import ChildRotations
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._journal import (
    Next,
    Probe,
    Refusal,
    UnsavedKey,
    adoption_is_news,
    after_refusal,
    next_step,
)
from cs2cap_account.rotation._protocol import Protocol, key_expired
from cs2cap_account.rotation._store_io import StoreIO
from cs2cap_account.rotation._tasks import Background, finish_even_if_cancelled
from cs2cap_account.stores._record import KeyRecord, PendingRotation, successor

__all__ = ["CatchUp"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

# Steps one look may take: probes, a closed journal, a key kept aside, fenced writes.
_MAX_STEPS: Final = 8
# A journal open this long (from its `started_at`) is taken for an abandoned rotation: a
# follower then takes the lock to finish it, rather than wait for its rotator.
STALE_JOURNAL: Final = dt.timedelta(seconds=60)


@attrs.frozen
class _Probed:
    """What a probe found.

    `refusal` is the stored key's 401, if it got one; `live` the kept-aside key that
    works, with its info, if any.
    """

    probe: Probe
    refusal: AuthenticationError | None = None
    live: tuple[SecretKey, KeyInfo] | None = None


@attrs.frozen
class _Done:
    """A look ended, with the event of the rotation it finished, if any."""

    event: RotationEvent | None


_EMPTY_STORE: Final = frozenset({Next.INITIALISE, Next.WRITE_BACK_HELD, Next.RECOVER_INTO_EMPTY})


@attrs.define
class CatchUp:
    """Brings this process and the store up to date with each other; never reissues."""

    _client: AccountClient
    _clock: Clock
    _io: StoreIO
    _holding: Holding
    _protocol: Protocol
    _announcer: Announcer
    _background: Background
    _children: ChildRotations

    async def catch_up(self) -> RotationEvent | None:
        """Adopt a newer stored key, or finish a journal left open; never reissue.

        Adopting only reads the store, so it needs no lock: a fleet's followers switch
        together rather than one lease holder after another.
        """
        return await self._from(await self._io.load())

    async def _from(self, record: KeyRecord | None) -> RotationEvent | None:
        """`catch_up()` with the record just loaded."""
        step = next_step(record, self._holding.held())
        if step is Next.NOTHING_TO_DO and record is not None:
            await self._children.adopt(record)  # a child rotated on its own, elsewhere
        if step in {Next.NOTHING_TO_DO, Next.WAIT_HALTED}:
            return None
        if step is Next.ADOPT:
            assert record is not None
            return await self._adopt(record)
        async with self._io.store.lock():
            return await self.locked()

    async def follow_up(self) -> bool:
        """After a store change: catch up; True to look again at the next change.

        A rotation in progress in another process (a journal open, younger than
        `STALE_JOURNAL`) is left to it: if its new key is saved already, this process
        sends it at once, and adopts and announces it (child keys included) when the
        journal closes. Waiting for that rotator's lock instead would line the whole fleet
        up behind it, one lease at a time. An older journal is finished under the lock.
        """
        record = await self._io.load()
        pending = None if record is None else record.pending
        if (
            record is not None
            and pending is not None
            and self._clock.now() - pending.started_at < STALE_JOURNAL
        ):
            saved = record.generation > pending.from_generation
            if saved and self._holding.unsaved is None and not self._holding.sends(record):
                self._holding.hold(record)
            return True
        await self._from(record)
        # A child rotated on its own keeps the generation: a store holding children is
        # read at every report, not only at a new generation.
        return record is not None and bool(record.sub_keys or record.child_rotations)

    async def locked(self, probed: _Probed | None = None) -> RotationEvent | None:
        """Carry out the steps the store calls for, up to the one that ends the look.

        Loops after a probe (which is not repeated for the same record) or a write that
        closes the journal or drops the unsaved key; bounded, so it ends. `probed` is what
        is already known of the stored key, for the first record read.
        """
        record = await self._io.load()
        probed = probed or _Probed(Probe.NOT_PROBED)
        for _ in range(_MAX_STEPS):
            step = next_step(record, self._holding.held(), probed.probe)
            if step in _EMPTY_STORE:
                done, probed = await self._into_empty(step, probed)
                if done:
                    return done.event
                continue
            if step is Next.NOTHING_TO_DO and record is not None:
                await self._children.adopt(record)
            if step in {Next.NOTHING_TO_DO, Next.WAIT_HALTED}:
                return None
            if step is Next.PROBE_HELD:
                probed = await self._probe_held()
                continue
            assert record is not None
            if step is Next.ADOPT:
                return await self._adopt(record)
            if step is Next.RESUME_AND_PROBE:
                probed = await self._probe(record)
                continue
            if step is Next.RECOVER_REVOKED:
                return await self._protocol.recover_revoked(record)
            if step is Next.CLOSE_JOURNAL:
                logger.info(
                    "an interrupted rotation had not reissued %s; closing it", record.key_id
                )
                await self._io.close_journal(record)
            elif step is Next.KEEP_HELD_ASIDE:
                await self._keep_held_aside()
            else:
                return await self._finish(step, record, probed)
            record, probed = await self._io.load(), _Probed(Probe.NOT_PROBED)
        return None

    async def after_revoked(
        self, sent: SecretKey, refusal: AuthenticationError
    ) -> RotationEvent | None:
        """A check found the key held here (`sent`) refused: look again, under the lock.

        If the store still holds that key with no journal open, a reissue no rotation of
        this store made revoked it (`Protocol.recover_revoked`). Returns the event of the
        recovery, or of whatever the look finished; None if the refusal stands.
        """
        async with self._io.store.lock():
            if self._holding.key != sent:
                return None  # the key moved on meanwhile: the refusal was of an older one
            return await self.locked(_Probed(Probe.STORED_REVOKED, refusal))

    async def _into_empty(self, step: Next, probed: _Probed) -> tuple[_Done | None, _Probed]:
        """The steps for an empty store: initialise, write back, or recover.

        Initialise it with the client's key, or write the unsaved key back, or recover a
        key refused after a reset. Returns what ended the look, or (after a refused
        initialisation) what that refusal found.
        """
        if step is Next.INITIALISE:
            try:
                return _Done(await self._initialise()), probed
            except AuthenticationError as refusal:
                if self._holding.key_id is None:
                    raise  # a first use with a key that does not work
                return None, _Probed(Probe.HELD_REVOKED, refusal)
        if step is Next.RECOVER_INTO_EMPTY:
            recovered = await self._recover_into_empty(probed)
            if recovered is None:
                return _Done(None), probed
            saved = recovered
        else:
            unsaved = self._holding.unsaved
            assert step is Next.WRITE_BACK_HELD
            assert unsaved is not None
            saved = await self._protocol.write_back(unsaved)
        return _Done(await self._protocol.complete(saved)), probed

    async def _finish(self, step: Next, record: KeyRecord, probed: _Probed) -> RotationEvent:
        """The steps that end in a completed rotation."""
        if step is Next.SAVE_HELD:
            unsaved = self._holding.unsaved
            assert unsaved is not None
            saved = await self._protocol.save_new_key(
                record, unsaved.record.key, unsaved.record.key_id, unsaved.record.pending
            )
        elif step is Next.PROMOTE_KEPT_ASIDE:
            assert probed.live is not None
            saved = await self._promote(record, *probed.live)
        elif step is Next.RECOVER:
            logger.warning("an interrupted rotation lost the new key of %s", record.key_id)
            lost = KeyLostError(str(probed.refusal), previous_key_id=record.key_id)
            saved = await finish_even_if_cancelled(self._protocol.recover(record, lost))
        else:
            assert step is Next.COMPLETE
            logger.warning("finishing an interrupted rotation to generation %d", record.generation)
            saved = await self._protocol.confirm_saved(record)
        return await self._protocol.complete(saved)

    async def _initialise(self) -> RotationEvent | None:
        """An empty store: the client's key becomes generation 1 of a new lineage.

        On first use that key is the one the process started with; after a reset, it may
        be one it never announced (its rotation was stopped after the save): announced
        now, as for any key adopted.
        """
        try:
            key_id = (await self._client.get_key()).id
        except AuthenticationError as exc:
            if not key_expired(exc):
                raise
            # Recorded as it is; the check that follows replaces it (`KeyRotator.check`).
            key_id = await self._protocol.id_of_expired(exc)
        record = successor(None, self._holding.key, key_id, at=self._clock.now())
        await self._io.write(record, None)
        return await self._adopt(record)

    async def _recover_into_empty(self, probed: _Probed) -> KeyRecord | None:
        """The store was reset and the key held here is refused: recover, wait, or halt.

        The journal that would say a reissue lost its key went with the reset. The key in
        force, if it ever authenticated a call, is held by another process, which writes
        it back: wait for it (None). If it never did, it is lost: recover with the token
        (or halt), and write the new key back as generation 1 of a new lineage.
        """
        previous = self._holding.key_id
        assert previous is not None
        logger.warning(
            "the key store was emptied and the root key %s held here is refused", previous
        )
        lost = KeyLostError(str(probed.refusal), previous_key_id=previous)
        halt = self._protocol.halt_for(previous)
        if halt is not None:
            raise halt from lost
        if await self._protocol.active_key_used():
            logger.warning("the root key in force was used since its reissue; waiting for it")
            return None
        # The reissue and the write-back of its key: no cancellation comes between them.
        return await finish_even_if_cancelled(self._reissue_into_empty(previous, lost))

    async def _reissue_into_empty(self, previous: str, lost: KeyLostError) -> KeyRecord:
        """Reissue with the token, and write the key back into the empty store (or hold it)."""
        new = await self._protocol.reissue_lost(previous, lost)
        journal = PendingRotation(
            from_generation=0,
            previous_key_id=previous,
            reason="recovered after the key store was reset",
            started_at=self._clock.now(),
        )
        placeholder = successor(None, new.key, new.id, at=self._clock.now())
        unsaved = UnsavedKey(attrs.evolve(placeholder, pending=journal), follows_key_id=previous)
        return await self._protocol.write_back(unsaved)

    async def _probe_held(self) -> _Probed:
        """Whether the unsaved key held here still authenticates.

        A refusal is an answer; no answer (network, 5xx) concludes nothing.
        """
        unsaved = self._holding.unsaved
        assert unsaved is not None
        try:
            await self._client.get_key(key=unsaved.record.key)
        except AuthenticationError as refusal:
            return _Probed(Probe.HELD_REVOKED, refusal)
        except CS2CapError:
            return _Probed(Probe.NO_ANSWER)
        return _Probed(Probe.HELD_WORKS)

    async def _keep_held_aside(self) -> None:
        """Keep the unsaved key aside in the store, which moved past the record it follows."""
        unsaved = self._holding.unsaved
        assert unsaved is not None
        logger.warning(
            "the store moved on before the new key %s could be saved; keeping it aside",
            unsaved.record.key_id,
        )
        await self._io.keep_aside(unsaved.record.key)
        self._holding.unsaved = None

    async def _adopt(self, record: KeyRecord) -> RotationEvent | None:
        """Hold the stored key; announce it if it is new to this process.

        Everything the announcement needs is in the record (the child keys' metadata
        included), so adopting sends no request: a fleet of followers costs the API nothing.
        """
        news = adoption_is_news(
            record, self._holding.held(), sends_stored_key=self._holding.sends(record)
        )
        previous_id = self._holding.key_id
        self._holding.hold(record)
        self._holding.know_children(record)  # announced with the root key, if at all
        self._holding.halted = None
        if not news:
            self._holding.announced.add(record.key_id)
            return None
        logger.info("adopting generation %d of the root key from the store", record.generation)
        made: dict[str, CreatedSubKey] = {}
        for name, stored in record.sub_keys.items():
            info = stored.info
            if info is None:  # a record written before child metadata was kept
                try:
                    info = (await self._client.sub_keys.get(stored.id)).key
                except CS2CapError:
                    continue
            made[name] = CreatedSubKey(key=stored.key, key_info=info)
        event = RotationEvent(
            new_key=record.key,
            key_id=record.key_id,
            previous_key_id=previous_id,
            generation=record.generation,
            rotated_at=record.saved_at,
            reason="adopted",
            sub_keys=made,
        )
        return await self._announcer.announce(event)

    async def _probe(self, record: KeyRecord) -> _Probed:
        """Whether the stored key works; if not, the last kept-aside key that does.

        A refusal is an answer; any other error (network, 5xx) propagates.
        """
        try:
            await self._client.get_key(key=record.key)
        except AuthenticationError as refusal:
            for key in reversed(record.kept_aside):
                try:
                    info = await self._client.get_key(key=key)
                except AuthenticationError:
                    continue
                return _Probed(Probe.KEPT_ASIDE_WORKS, refusal, live=(key, info))
            return _Probed(Probe.STORED_REVOKED, refusal)
        return _Probed(Probe.STORED_WORKS)

    async def _promote(self, record: KeyRecord, key: SecretKey, info: KeyInfo) -> KeyRecord:
        """Save a kept-aside key that works as the generation after `record`.

        A fenced save keeps its reissued key aside; when that key is the live one (its
        reissue revoked the stored key), this is how it comes back into use.
        """
        logger.warning(
            "the stored root key %s no longer authenticates; promoting the kept-aside "
            "key %s to generation %d",
            record.key_id,
            info.id,
            record.generation + 1,
        )
        promoted = successor(record, key, info.id, at=self._clock.now())
        return await self._io.write(promoted, record.generation)

    # -- after a 401 on an ordinary call ---------------------------------------------

    async def after_refusal(self, rotation: asyncio.Future[Any] | None) -> SecretKey | None:
        """After a 401 on an ordinary call: the stored key if it is another one. Never reissues.

        If the stored key is the one refused and a key kept aside still authenticates, that
        key is promoted to the next generation first, and returned. While this process is
        rotating (`rotation`), the refusal is most likely its own reissue landing: the call
        waits for the rotation to switch the client to the new key (and is sent again).
        """
        rotating = (
            rotation is not None and not rotation.done() and rotation is not asyncio.current_task()
        )
        record = None if rotating else await self._io.load()
        probed = _Probed(Probe.NOT_PROBED)
        while True:
            verdict = after_refusal(
                record,
                sends_stored_key=self._holding.sends(record),
                rotating=rotating,
                probe=probed.probe,
            )
            if verdict is Refusal.AWAIT_ROTATION:
                assert rotation is not None
                await self._holding.switched_or(rotation)
                return None
            if verdict is Refusal.LET_IT_STAND:
                return None
            assert record is not None
            if verdict is Refusal.OFFER_STORED:
                if not self._background.busy:
                    self._background.spawn(self.catch_up())
                return record.key
            try:
                if verdict is Refusal.PROBE:
                    probed = await self._probe(record)
                    continue
                assert verdict is Refusal.PROMOTE_KEPT_ASIDE
                assert probed.live is not None
                record = await self._promote(record, *probed.live)
            except CS2CapError as exc:  # fenced by another writer, or the probe failed
                logger.warning("could not promote a kept-aside key (%s)", exc)
                record = await self._io.load()
            probed = _Probed(Probe.NO_ANSWER)
