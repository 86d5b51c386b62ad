"""Child keys on their own schedule: rotate one child, and leave the root alone.

`ChildRotations.check()` runs after the root key's part of every check. It reads the
store once and, with no request, announces the children another process rotated
(`_child_journal.news`); then, for each managed child (`children=`, or every child the
store records) that has a journal open or is older than `child_max_age`, one at a time,
under the store's lock, `_rotate()` reads top to bottom:

1. journal the rotation in the store (`child_rotations[name]`: the old child's id and
   creation time) and read it back, so a broken store stops before anything is revoked;
2. reissue the child (`POST /account/sub-keys/{id}/reissue`: the root key and the other
   children are untouched) and save its new key under its name, one generation on:
   shielded together from cancellation. A reissue whose answer was lost is recovered
   with the root key alone (`client.sub_keys.recover`);
3. verify: `GET /account/key` with the child's new key;
4. announce (`ChildRotationEvent`: sinks that publish children, `on_child_rotate`
   callbacks, `events(children=True)`), then close the journal.

A journal left open by a crash is finished by the next rotator to look, as
`_child_journal.next_child_step()` says. A new child key the store cannot take is held
here, never dropped, and saved at the next check. The root key is never reissued here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._clock import Clock
from cs2cap_account._models import CreatedSubKey, KeyInfo
from cs2cap_account._reissue import Answered, ChildProbe, Gone, NoAnswer, Verdict, child_verdict
from cs2cap_account._secret import redact_text
from cs2cap_account.errors import (
    AuthenticationError,
    CS2CapError,
    NotFoundError,
    RotationError,
    StoreError,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account.rotation._announce import Announcer, child_event
from cs2cap_account.rotation._child_journal import ChildNext, managed, news, next_child_step
from cs2cap_account.rotation._event import ChildRotationEvent
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._protocol import authenticates
from cs2cap_account.rotation._schedule import due
from cs2cap_account.rotation._steps import Step, StepHooks
from cs2cap_account.rotation._store_io import StoreIO
from cs2cap_account.rotation._tasks import finish_even_if_cancelled
from cs2cap_account.stores._record import KeyRecord, PendingChildRotation, StoredSubKey

__all__ = ["ChildRotations"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

ReportFailure = Callable[[BaseException], Awaitable[None]]


@attrs.frozen
class _Unsaved:
    """A reissued child key the store could not take: held here until it does."""

    name: str
    made: CreatedSubKey
    follows_key_id: str


@attrs.define
class ChildRotations:
    """The child keys one rotator rotates on their own schedule."""

    _client: AccountClient
    _clock: Clock
    _io: StoreIO
    _holding: Holding
    _announcer: Announcer
    _steps: StepHooks
    max_age: dt.timedelta | None
    names: tuple[str, ...] | None
    _report: ReportFailure
    # Monotonic time at which this process first held each child key id it switched to:
    # a child is never rotated again sooner than the schedule's minimum hold.
    _since: dict[str, float] = attrs.field(factory=dict)
    _unsaved: dict[str, _Unsaved] = attrs.field(factory=dict)
    _adopting: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    # -- the schedule -----------------------------------------------------------------

    async def check(self) -> None:
        """Adopt what others rotated, then finish or rotate each child that calls for it.

        One child's failure is reported (`on_failure`) and never stops the others. A child
        whose name looks like a key is left alone (its name would go in logs and events).
        """
        record = await self._io.load()
        if not self._root_in_sync(record):
            return
        assert record is not None
        await self.adopt(record)
        await self._announcer.republish_children()
        names = _plain(managed(record, self.names))
        opened = _plain(name for name in record.child_rotations if name not in names)
        unstored = [
            name for name in names if self.max_age is not None and name not in record.sub_keys
        ]
        listed = await self._listed(unstored) if unstored else {}
        for name in (*opened, *names, *self._unsaved.keys() - {*names, *opened}):
            if not (
                name in record.child_rotations
                or name in self._unsaved
                or self._looks_due(record.sub_keys.get(name), listed.get(name))
            ):
                continue
            try:
                await self._under_lock(name, reason="max_age", listed=listed.get(name))
            except Exception as exc:  # one child's trouble is reported, the next goes on
                logger.error("child key %r: %s", name, exc)
                await self._report(exc)

    async def rotate_now(self, name: str, reason: str) -> ChildRotationEvent:
        """Rotate the child `name` now, whatever its age (finishing an open one first)."""
        event = await self._under_lock(name, reason=reason, force=True)
        assert event is not None
        return event

    def _root_in_sync(self, record: KeyRecord | None) -> bool:
        """Whether the store holds the root key held here, with no root journal open.

        Otherwise the root's catch-up comes first: a child reissue needs the root key in
        force, and a root rotation in progress revokes every child anyway.
        """
        return (
            record is not None
            and record.pending is None
            and record.key_id == self._holding.key_id
            and self._holding.unsaved is None
            and self._holding.halted is None
        )

    def _looks_due(self, stored: StoredSubKey | None, listed: KeyInfo | None) -> bool:
        """Whether the child looks due by what is known without a request.

        The stored metadata (or the listing) against the server's time as estimated from
        the latest response; the server confirms before a rotation (`_rotate_if_due`).
        """
        info = listed if stored is None else stored.info
        if self.max_age is None:
            return False
        if info is None:
            return stored is not None  # a record written before metadata was kept: ask
        return self._due(info) is not None

    def _due(self, info: KeyInfo) -> str | None:
        """Whether the child `info` describes is due (`_schedule.due`), on the server's clock.

        The server's time comes from the latest `Date` plus the monotonic time since, so a
        local clock that is off neither rotates a child in a loop nor never rotates it; a
        child this process switched to is held at least the schedule's minimum.
        """
        since = self._since.get(info.id)
        held_for = None if since is None else self._clock.monotonic() - since
        return due(
            info,
            server_now=self._client._server_now(),
            local_now=self._clock.now(),
            max_age=self.max_age,
            before_expiry=None,
            held_for=None if held_for is None else dt.timedelta(seconds=held_for),
        ).reason

    async def _listed(self, names: list[str]) -> dict[str, KeyInfo]:
        """The active child of each name, by listing (one child per name, or none)."""
        found: dict[str, list[KeyInfo]] = {name: [] for name in names}
        try:
            async for detail in self._client.sub_keys.iterate():
                if detail.key.name in found:
                    found[detail.key.name].append(detail.key)
        except CS2CapError as exc:
            logger.warning("could not list the child keys to rotate (%s)", exc)
            return {}
        listed: dict[str, KeyInfo] = {}
        for name, infos in found.items():
            if len(infos) == 1:
                listed[name] = infos[0]
            elif not infos:
                logger.warning("no active child key is named %r; nothing to rotate", name)
            else:
                logger.warning(
                    "%d active child keys are named %r; not rotating any of them", len(infos), name
                )
        return listed

    # -- one child, under the lock ------------------------------------------------------

    async def _under_lock(
        self, name: str, *, reason: str, force: bool = False, listed: KeyInfo | None = None
    ) -> ChildRotationEvent | None:
        """Under the lock: finish the child's journal, then rotate it if due (or `force`).

        `listed` is the listing's view of a child the store does not hold. Returns the
        event of what this look finished or made, if anything.
        """
        async with self._io.store.lock():
            record = await self._io.load()
            if not self._root_in_sync(record):
                if not force:  # the root moved meanwhile: its catch-up comes first
                    return None
                raise RotationError(
                    f"not rotating the child key {name!r}: the store's root key is not the "
                    "one held here, or a root rotation is open; the next check catches up",
                    previous_key_id=None,
                )
            assert record is not None
            if name in self._unsaved:
                record = await self._save_held(record, self._unsaved[name])
            record, finished = await self._finish(record, name)
            if force:
                if name in record.child_rotations:  # a finished rotation's close failed
                    raise RotationError(
                        f"not rotating the child key {name!r} again: the journal of its last "
                        "rotation could not be closed (the store refused the write); try "
                        "again once the store takes writes",
                        previous_key_id=None,
                    )
                return await self._rotate_if_due(record, name, reason, force=True)
            if finished is not None or not self._looks_due(record.sub_keys.get(name), listed):
                return finished  # e.g. another process rotated it meanwhile
            return await self._rotate_if_due(record, name, reason, force=False)

    async def _finish(
        self, record: KeyRecord, name: str
    ) -> tuple[KeyRecord, ChildRotationEvent | None]:
        """Carry out what the child's journal calls for (`next_child_step`), once.

        Returns the record after it, and the event of the rotation it finished, if any.
        """
        step = next_child_step(record, name)
        if step is ChildNext.NOTHING_TO_DO:
            return record, None
        pending = record.child_rotations[name]
        if step is ChildNext.PROBE_OLD:
            step = next_child_step(record, name, await self._probe(pending.previous_key_id))
        if step is ChildNext.CLOSE_JOURNAL:
            logger.info(
                "an interrupted rotation of the child key %r had not reissued it; closing it",
                name,
            )
            return await self._close(name), None
        if step is ChildNext.WAIT:
            raise RotationError(
                f"could not tell whether the child key {name!r} was reissued; its journal "
                "stays open and the next check asks again",
                previous_key_id=pending.previous_key_id,
            )
        if step is ChildNext.RECOVER:
            logger.warning("an interrupted rotation lost the new key of the child key %r", name)
            lost = SubKeyLostError(
                f"the child key {pending.previous_key_id} was reissued and its new key lost",
                previous_key_id=pending.previous_key_id,
                name=name,
                previous_created_at=pending.previous_created_at,
            )
            record = await finish_even_if_cancelled(self._recover_and_save(name, lost))
        else:
            assert step is ChildNext.COMPLETE
            logger.warning("finishing an interrupted rotation of the child key %r", name)
            record = await self._confirm(record, name)
        return await self._complete(record, name)

    async def _rotate_if_due(
        self, record: KeyRecord, name: str, reason: str, *, force: bool
    ) -> ChildRotationEvent | None:
        """Confirm with the server that the child is due (or `force`), then rotate it."""
        old = await self._old_child(name, record.sub_keys.get(name))
        if old is None:
            if force:
                raise RotationError(
                    f"no single active child key named {name!r} to rotate",
                    previous_key_id=None,
                )
            return None
        if not force:
            if self._due(old) is None:
                return None
            logger.info("child key %r (%s) is due for rotation (max_age)", name, old.id)
        return await self._rotate(record, name, old, reason)

    async def _old_child(self, name: str, stored: StoredSubKey | None) -> KeyInfo | None:
        """The server's metadata of the child in force under `name` (root credential)."""
        if stored is not None:
            try:
                return (await self._client.sub_keys.get(stored.id)).key
            except NotFoundError:
                logger.warning(
                    "the stored child key %r (%s) no longer exists at the server; "
                    "looking it up by name",
                    name,
                    stored.id,
                )
        return (await self._listed([name])).get(name)

    async def _rotate(
        self, record: KeyRecord, name: str, old: KeyInfo, reason: str
    ) -> ChildRotationEvent:
        """1-4. Journal, reissue and save, verify, announce and close."""
        await self._journal(record, name, old, reason)
        await self._steps.passed(Step.CHILD_JOURNALED)
        record = await finish_even_if_cancelled(self._reissue_and_save(name, old))
        _, event = await self._complete(record, name)
        return event

    async def _journal(self, record: KeyRecord, name: str, old: KeyInfo, reason: str) -> None:
        """1. Journal the rotation, and read it back through the store's parser.

        A stored child that is not `old` (it no longer exists: reissued by hand, and
        `old` found by name) is dropped with it, so that the journal reads "not saved".
        """
        stored = record.sub_keys.get(name)
        pending = PendingChildRotation(
            previous_key_id=old.id,
            previous_created_at=old.created_at,
            reason=reason,
            started_at=self._clock.now(),
            generation=0 if stored is None else stored.generation,
        )

        def journaled(fresh: KeyRecord) -> KeyRecord | None:
            if name in fresh.child_rotations or fresh.sub_keys.get(name) != stored:
                return None
            children = dict(fresh.sub_keys)
            if stored is not None and stored.id != old.id:
                del children[name]
            return attrs.evolve(
                fresh,
                sub_keys=children,
                child_rotations={**fresh.child_rotations, name: pending},
            )

        unchanged = f"nothing was reissued; the child key {name!r} ({old.id}) is still in force"
        try:
            written = await self._update(name, journaled, "its journal")
            back = await self._io.load()
        except (StoreError, RotationError) as exc:
            raise RotationError(
                f"the key store cannot take the child's journal ({exc}); {unchanged}",
                previous_key_id=old.id,
            ) from exc
        if back != written:
            await self._close(name)
            raise RotationError(
                f"the key store gave back something other than the child's journal; {unchanged}",
                previous_key_id=old.id,
            )

    async def _reissue_and_save(self, name: str, old: KeyInfo) -> KeyRecord:
        """2. Reissue the child (recovering a lost answer) and save its new key."""
        try:
            made = await self._client.sub_keys.reissue(old.id)
        except SubKeyLostError as lost:
            return await self._recover_and_save(name, lost)
        except SubKeyOutcomeUnknownError as exc:
            raise RotationError(
                f"could not tell whether the child key {name!r} was reissued ({exc}); its "
                "journal stays open: the next check probes the old child and finishes",
                previous_key_id=old.id,
            ) from exc
        except CS2CapError as exc:
            await self._close(name)
            raise RotationError(
                f"the reissue of the child key {name!r} failed ({exc}); nothing was revoked",
                previous_key_id=old.id,
            ) from exc
        await self._steps.passed(Step.CHILD_REISSUED)
        return await self._save(name, made, follows=old.id)

    async def _recover_and_save(self, name: str, lost: SubKeyLostError) -> KeyRecord:
        """The reissue happened and its key was lost: reissue the child it made, and save.

        The root key alone does it (no session token): the new child is the one active
        child of the name created after the old one. If no child of that name is left
        (deleted meanwhile), the child is gone: its journal and entry are dropped, once.
        """
        try:
            made = await self._client.sub_keys.recover(lost)
        except SubKeyOutcomeUnknownError as exc:
            if exc.cause is lost and await self._none_named(name):
                await self._drop(name)
                raise RotationError(
                    f"the child key {name!r} is gone: no active child key has that name any "
                    "more (deleted?); it is no longer stored, and its journal is closed",
                    previous_key_id=lost.previous_key_id,
                ) from exc
            raise self._not_recovered(name, lost, exc) from exc
        except CS2CapError as exc:
            raise self._not_recovered(name, lost, exc) from exc
        await self._steps.passed(Step.CHILD_REISSUED)
        return await self._save(name, made, follows=lost.previous_key_id)

    def _not_recovered(self, name: str, lost: SubKeyLostError, exc: CS2CapError) -> RotationError:
        return RotationError(
            f"the child key {name!r} was reissued and its new key lost, and it could not be "
            f"recovered yet ({exc}); the journal stays open and the next check tries again. "
            "If several active child keys share the name, delete the strays.",
            previous_key_id=lost.previous_key_id,
        )

    async def _none_named(self, name: str) -> bool:
        """Whether the listing shows no active child named `name` (False if it fails)."""
        try:
            return not [
                detail
                async for detail in self._client.sub_keys.iterate()
                if detail.key.name == name and detail.key.is_active
            ]
        except CS2CapError:
            return False

    async def _save(self, name: str, made: CreatedSubKey, *, follows: str) -> KeyRecord:
        """Save the new child under its name, one generation on; the journal stays open.

        Only over the child it follows (`follows`, or none), under its open journal. If
        the store cannot take it, it is held here, never dropped, and saved at the next
        check.
        """

        def saved(fresh: KeyRecord) -> KeyRecord | None:
            before = fresh.sub_keys.get(name)
            pending = fresh.child_rotations.get(name)
            if pending is None or (before is not None and before.id != follows):
                return None
            entry = StoredSubKey(
                key=made.key,
                id=made.key_info.id,
                info=made.key_info,
                generation=max(pending.generation, 0 if before is None else before.generation) + 1,
            )
            return attrs.evolve(fresh, sub_keys={**fresh.sub_keys, name: entry})

        try:
            record = await self._update(name, saved, "its new key")
        except (StoreError, RotationError) as exc:
            self._unsaved[name] = _Unsaved(name, made, follows)
            raise RotationError(
                f"the new child key {name!r} ({made.key_info.id}) could not be saved "
                f"({exc}); it is held here and saved at the next check",
                previous_key_id=follows,
            ) from exc
        self._unsaved.pop(name, None)
        await self._steps.passed(Step.CHILD_SAVED)
        return record

    async def _save_held(self, record: KeyRecord, held: _Unsaved) -> KeyRecord:
        """Save a child key held since its save failed, if it is still the live one.

        Already stored (the failed save had landed): let go. Still following the old
        child under its open journal: saved. Otherwise it is probed: refused (another
        reissue revoked it), it is let go; it works, it is saved over whatever the store
        holds under the name.
        """
        name, made = held.name, held.made
        stored = record.sub_keys.get(name)
        if stored is not None and stored.id == made.key_info.id:
            del self._unsaved[name]
            return record
        pending = record.child_rotations.get(name)
        follows = (
            pending is not None
            and pending.previous_key_id == held.follows_key_id
            and (stored is None or stored.id == held.follows_key_id)
        )
        if not follows:
            try:
                await self._client.get_key(key=made.key)
            except AuthenticationError:
                logger.warning(
                    "the unsaved child key %r (%s) was revoked meanwhile; letting it go",
                    name,
                    made.key_info.id,
                )
                del self._unsaved[name]
                return record
            pending = PendingChildRotation(
                previous_key_id=stored.id if stored else held.follows_key_id,
                previous_created_at=made.key_info.created_at,
                reason="recovery",
                started_at=self._clock.now(),
                generation=0 if stored is None else stored.generation,
            )

            def reopened(fresh: KeyRecord) -> KeyRecord:
                return attrs.evolve(fresh, child_rotations={**fresh.child_rotations, name: pending})

            await self._update(name, reopened, "the journal of a held key")
            return await self._save(name, made, follows=pending.previous_key_id)
        return await self._save(name, made, follows=held.follows_key_id)

    async def _probe(self, old_id: str) -> Verdict:
        """What the old child is now (root credential): still active, gone, or unknown."""
        seen: ChildProbe
        try:
            detail = await self._client.sub_keys.get(old_id)
            seen = Answered(detail.key.id, detail.key.is_active)
        except NotFoundError:
            seen = Gone()
        except CS2CapError:
            seen = NoAnswer()
        return child_verdict(seen)

    async def _complete(self, record: KeyRecord, name: str) -> tuple[KeyRecord, ChildRotationEvent]:
        """3-4. Verify the saved child with its own key, announce it, close the journal."""
        pending = record.child_rotations[name]
        entry = record.sub_keys[name]
        if not await self._verify(entry):
            # A reissue landed after the one saved (its first attempt, late): the child it
            # made is the live one, and the root key recovers it.
            lost = SubKeyLostError(
                f"the new child key {entry.id} does not authenticate",
                previous_key_id=entry.id,
                name=name,
                previous_created_at=entry.info.created_at if entry.info else pending.started_at,
            )
            record = await finish_even_if_cancelled(self._recover_and_save(name, lost))
            entry = record.sub_keys[name]
            if not await self._verify(entry):
                raise RotationError(
                    f"the recovered child key {name!r} does not authenticate either",
                    previous_key_id=pending.previous_key_id,
                )
        await self._steps.passed(Step.CHILD_VERIFIED)
        event = await self._announce(entry, name, pending.previous_key_id, pending.reason)
        await self._steps.passed(Step.CHILD_ANNOUNCED)
        try:
            record = await self._close(name)
        except (StoreError, RotationError) as exc:
            logger.warning(
                "could not close the journal of the child key %r (%s); the next check will",
                name,
                exc,
            )
        return record, event

    async def _verify(self, entry: StoredSubKey) -> bool:
        """Whether the child's new key authenticates (`GET /account/key` sent with it)."""
        return await authenticates(self._client, self._clock, entry.key, entry.id, what="child key")

    # -- writing: each write applies its own change to the record as stored now ----------

    async def _update(
        self,
        name: str,
        change: Callable[[KeyRecord], KeyRecord | None],
        what: str,
        *,
        always: bool = False,
    ) -> KeyRecord:
        """Apply `change` to the record as stored now, and write it at its generation.

        A child's writes keep the root's generation, so the compare-and-set alone would
        not fence off a writer that lost the store's lock: each write reads the record
        again and applies only its own change to it. `change` returns None when the
        record no longer allows it (`RotationError`); an unchanged record is not written
        again unless `always`.
        """
        fresh = await self._io.load()
        if not self._root_in_sync(fresh):
            raise RotationError(
                f"not writing {what} for the child key {name!r}: the store's root key moved",
                previous_key_id=None,
            )
        assert fresh is not None
        changed = change(fresh)
        if changed is None:
            raise RotationError(
                f"not writing {what} for the child key {name!r}: the store changed under "
                "its rotation (another rotator took over?)",
                previous_key_id=None,
            )
        if changed == fresh and not always:
            return fresh
        return await self._io.write(changed, fresh.generation)

    async def _confirm(self, record: KeyRecord, name: str) -> KeyRecord:
        """Write a stored new child again before finishing its rotation.

        The save that stored it may not have been confirmed (a store that waits for
        replicas raised, the rotation stopped): no one learns of a key before a save of
        it returns.
        """
        entry = record.sub_keys[name]

        def same(fresh: KeyRecord) -> KeyRecord | None:
            return fresh if fresh.sub_keys.get(name) == entry else None

        return await self._update(name, same, "its new key", always=True)

    async def _close(self, name: str) -> KeyRecord:
        """Close the child's journal in the record as stored now."""

        def closed(fresh: KeyRecord) -> KeyRecord:
            journals = {k: v for k, v in fresh.child_rotations.items() if k != name}
            return attrs.evolve(fresh, child_rotations=journals)

        return await self._update(name, closed, "the close of its journal")

    async def _drop(self, name: str) -> None:
        """The child is gone: drop its entry and journal from the store, and here."""

        def dropped(fresh: KeyRecord) -> KeyRecord:
            return attrs.evolve(
                fresh,
                sub_keys={k: v for k, v in fresh.sub_keys.items() if k != name},
                child_rotations={k: v for k, v in fresh.child_rotations.items() if k != name},
            )

        await self._update(name, dropped, "the removal of a gone child")
        self._holding.children.pop(name, None)

    # -- telling ------------------------------------------------------------------------

    async def adopt(self, record: KeyRecord) -> None:
        """Announce every child another process stored since this one last looked.

        Everything the event needs is in the record: no request. One look at a time; and
        a look that waited on slow callbacks reads the store again before each next child
        it tells of, so it never announces a key that was replaced meanwhile.
        """
        async with self._adopting:
            for index, name in enumerate(_plain(news(record, self._holding.children))):
                if index:
                    record = await self._io.load() or record
                if name not in news(record, self._holding.children):
                    continue  # gone, rotating again, or told of meanwhile
                known = self._holding.children.get(name)
                previous = None if known is None else known.id
                await self._announce(record.sub_keys[name], name, previous, "adopted")

    async def _announce(
        self, entry: StoredSubKey, name: str, previous_key_id: str | None, reason: str
    ) -> ChildRotationEvent:
        """Know `entry` as the child `name` here, and tell about it."""
        self._holding.children[name] = entry
        known = {child.id for child in self._holding.children.values()}
        self._since = {key_id: at for key_id, at in self._since.items() if key_id in known}
        self._since.setdefault(entry.id, self._clock.monotonic())
        event = child_event(name, entry, previous_key_id, reason, now=self._clock.now())
        return await self._announcer.announce_child(event)


def _plain(names: Iterable[str]) -> tuple[str, ...]:
    """`names`, less any that looks like a key: a name goes in logs, errors and events."""
    kept = tuple(names)
    plain = tuple(name for name in kept if redact_text(name) == name)
    if len(plain) != len(kept):
        logger.warning(
            "%d child key(s) whose name looks like an API key are not rotated on their own",
            len(kept) - len(plain),
        )
    return plain
