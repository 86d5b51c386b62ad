"""`KeyRotator`: rotate the root key on a schedule or on demand, and never lose it.

A reissue shows the new key once and revokes the old one (and every child) at the same
instant, so the rotator keeps a journal in the store and follows one protocol, written
out in `_rotate()`:

1-2. journal "pending" in the store: the write also proves the store is writable, so a
     broken store stops the rotation before anything is revoked;
3.   snapshot the child keys into the journal (with `recreate_sub_keys`);
4-6. reissue, save the new key (generation + 1), switch the client: shielded together
     from cancellation;
7.   verify: `GET /account/key` with the new key;
8.   re-create the child keys, saving each;
9.   announce (callbacks, then `events()`), then close the journal.

A journal left open by a crash is finished by the next rotator to look (`_resume()`):
if the new key was saved, steps 7-9 run again; if not, the stored key is probed, and a
revoked one means the reissue happened and its key was lost, which only the recovery
token (a session JWT) can mend.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
from tenacity import (
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    wait_exponential,
    wait_random,
)

from cs2cap_account._client import AccountClient
from cs2cap_account._models import CreatedSubKey
from cs2cap_account._retry import retrying
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
from cs2cap_account.rotation._callbacks import Callback, run_callbacks
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._schedule import as_timedelta, due_reason, jittered
from cs2cap_account.stores._memory import MemoryKeyStore
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import ChildSpec, KeyRecord, PendingRotation, StoredSubKey

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["KeyRotator"]

T = TypeVar("T")

logger: Final = logging.getLogger("cs2cap_account.rotation")

_STORE_ATTEMPTS: Final = 5
_VERIFY_ATTEMPTS: Final = 5
_CALLBACK_ATTEMPTS: Final = 3

_LOST_WITHOUT_RECOVERY: Final = (
    "The root key {key_id} was reissued, but the response carrying the new key was lost: "
    "the old key is revoked and the new one is unknown, so no key works now. To recover: "
    "reissue the root key with a session JWT (e.g. `AccountClient(session_token=...)"
    ".reissue_key()`, or from the CS2Cap dashboard) and put the new key in the store "
    "(`cs2cap-account key reissue --store PATH` does both). To let the rotator do this "
    "itself next time, pass recovery_token=<session JWT> to KeyRotator. It will not "
    "reissue again until a new key is in the store."
)


class KeyRotator:
    """Reissues the root key on a schedule or on demand, and hands the new key on.

    ```python
    rotator = KeyRotator(client, store=FileKeyStore("key.json"), max_age=dt.timedelta(days=30))

    @rotator.on_rotate
    async def tell_workers(event: RotationEvent) -> None: ...

    async with rotator:          # checks now, then every check_interval seconds
        ...
    ```

    The schedule comes from the server's `created_at`/`expires_at`: a key older than
    `max_age`, or within `before_expiry` of expiring, is rotated at the next check, the
    first of which runs at start, so restarts never postpone a rotation. The new key is
    saved in `store` before anything else learns of it. With `recovery_token` (a session
    JWT) a reissue whose response was lost is recovered; without, the rotator stops and
    says what to do. `recreate_sub_keys` re-creates the child keys a reissue revokes.
    """

    def __init__(
        self,
        client: AccountClient,
        *,
        store: KeyStore | None = None,
        max_age: dt.timedelta | float | None = None,
        before_expiry: dt.timedelta | float | None = None,
        check_interval: float = 3600.0,
        jitter: float = 0.1,
        recovery_token: str | SecretKey | None = None,
        recreate_sub_keys: bool = False,
        callback_timeout: float = 30.0,
    ) -> None:
        if client.api_key is None:
            raise ValueError("KeyRotator needs a client holding the root API key it rotates")
        if check_interval <= 0 or callback_timeout <= 0:
            raise ValueError("check_interval and callback_timeout must be positive")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be a fraction in [0, 1)")
        self._client = client
        self._clock = client.clock
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._max_age = as_timedelta(max_age, name="max_age")
        self._before_expiry = as_timedelta(before_expiry, name="before_expiry")
        self._check_interval = check_interval
        self._jitter = jitter
        self._recovery_token = (
            SecretKey(recovery_token) if isinstance(recovery_token, str) else recovery_token
        )
        self._recreate_sub_keys = recreate_sub_keys
        self._callback_timeout = callback_timeout
        self._callbacks: list[Callback] = []
        self._subscribers: set[asyncio.Queue[RotationEvent]] = set()
        # The generation and id of the key this process holds; 0 / None until known.
        self._generation = 0
        self._key_id: str | None = None
        self._announced = 0
        self._halted: RotationError | None = None
        self._unsaved: KeyRecord | None = None
        self._recoveries = 0
        # The root key id in force when a recovery ended not knowing if its reissue landed.
        self._unresolved_rescue: str | None = None
        self._last_event: RotationEvent | None = None
        self._switched = asyncio.Event()  # set (and replaced) whenever the client's key changes
        self._inflight: asyncio.Task[RotationEvent] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        client.on_unauthorized(self._reload)

    def __repr__(self) -> str:
        return f"KeyRotator(store={self._store!r}, generation={self._generation})"

    # -- public surface ---------------------------------------------------------------

    def on_rotate(self, callback: Callback) -> Callback:
        """Register `callback(event)`, sync or async, to run after every new key.

        Usable as a decorator. Callbacks run concurrently, each within `callback_timeout`,
        retried with backoff on failure; a failure is logged and listed in
        `event.callback_errors` and never undoes the rotation.
        """
        self._callbacks.append(callback)
        return callback

    @property
    def current_key(self) -> SecretKey:
        """The root key in force in this process, for code that builds its own clients."""
        key = self._client.api_key
        assert key is not None
        return key

    @property
    def generation(self) -> int:
        """The store generation of `current_key` (0 before the rotator first looked)."""
        return self._generation

    @property
    def recoveries(self) -> int:
        """How many lost reissues this rotator recovered with the recovery token."""
        return self._recoveries

    async def rotate_now(self, reason: str = "manual") -> RotationEvent:
        """Rotate away from the key this process holds, and return the event.

        Concurrent callers share one rotation. If the store already holds a newer key
        (another process rotated), that key is adopted instead of reissuing again.
        """
        if self._inflight is None:
            task = asyncio.ensure_future(self._rotate(reason, self.current_key))
            task.add_done_callback(self._rotation_done)
            self._inflight = task
        return await asyncio.shield(self._inflight)

    async def events(self) -> AsyncGenerator[RotationEvent, None]:
        """Every `RotationEvent` from the moment iteration starts, as it is announced."""
        queue: asyncio.Queue[RotationEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def run(self) -> None:
        """Run the schedule until cancelled: check at once, then every `check_interval`.

        A failing check is logged and retried with backoff; the loop never ends by itself.
        If the store can announce changes (`store.changes()`, e.g. Redis), the rotator also
        follows them, adopting another process's new key as soon as it is saved.
        Use `start()`/`stop()` or `async with rotator:`, or hand this to a TaskGroup.
        """
        changes: Callable[[], AsyncIterator[int]] | None = getattr(self._store, "changes", None)
        if changes is None:
            await self._schedule()
        else:
            await asyncio.gather(self._schedule(), self._follow(changes))

    async def _schedule(self) -> None:
        cap = min(300.0, self._check_interval)
        while True:
            async for attempt in retrying(
                attempts=None,
                clock=self._clock,
                wait=wait_exponential(multiplier=1.0, max=cap) + wait_random(0, 1.0),
                before_sleep=_log_failed_check,
            ):
                with attempt:
                    await self.check()
            await self._clock.sleep(jittered(self._check_interval, self._jitter))

    async def _follow(self, changes: Callable[[], AsyncIterator[int]]) -> None:
        """Catch up whenever the store reports a generation other than the one held."""
        while True:
            try:
                async for generation in changes():
                    if generation != self._generation:
                        await self._catch_up()
            except Exception as exc:  # never let a bad message end the follower
                logger.error("following the key store failed (%s); following again", exc)
                await self._clock.sleep(1.0)

    def start(self) -> asyncio.Task[None]:
        """Run the schedule in a background task (once) and return it."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self.run())
        return self._loop_task

    async def stop(self) -> None:
        """Stop the schedule and any rotation in flight, and wait until all have ended.

        A reissue and the save of its key are never interrupted: they finish first. A
        rotation stopped after that is completed (verify, children, callbacks) by the next
        rotator to look at the store.
        """
        tasks = [t for t in (self._loop_task, self._inflight, *self._background) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await _finish_even_if_cancelled(asyncio.gather(*tasks, return_exceptions=True))
        self._loop_task = None

    async def __aenter__(self) -> KeyRotator:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def attach(self, app: web.Application) -> None:
        """Run the rotator for the life of an aiohttp application (`app.cleanup_ctx`)."""
        app.cleanup_ctx.append(self._app_lifetime)

    async def _app_lifetime(self, _app: web.Application) -> AsyncIterator[None]:
        async with self:
            yield

    async def check(self) -> RotationEvent | None:
        """One scheduled check: catch up with the store, then rotate if the key is due.

        Returns the event of a rotation this check finished, adopted or made, if any.
        """
        caught_up = await self._catch_up()
        if self._halted is not None:
            logger.error("not rotating: %s", self._halted)
            return caught_up
        info = await self._client.get_key()
        reason = due_reason(
            info, self._clock.now(), max_age=self._max_age, before_expiry=self._before_expiry
        )
        if reason is None:
            return caught_up
        logger.info("root key %s is due for rotation (%s)", info.id, reason)
        return await self.rotate_now(reason)

    # -- the rotation protocol ----------------------------------------------------------

    async def _rotate(self, reason: str, held: SecretKey) -> RotationEvent:
        async with self._store.lock():
            event = await self._catch_up_locked()
            if self.current_key != held:
                # The key we held was rotated away already (by another process, or by a
                # rotation finished just now): that is the rotation asked for.
                event = event or self._last_event
                if event is not None:
                    return event
            if self._halted is not None:
                raise self._halted
            # 1-3. Journal, with the children about to be revoked.
            record = await self._journal(await self._load(), reason)
            await self._passed("journaled")
            # 4-6. Reissue, save, switch: no cancellation can come between them.
            record = await _finish_even_if_cancelled(self._reissue_and_save(record))
            # 7-9. Verify, re-create the children, announce.
            return await self._complete(record)

    async def _journal(self, record: KeyRecord, reason: str) -> KeyRecord:
        """1-3. Journal "pending" (proving the store writable), snapshot the children."""
        pending = PendingRotation(
            from_generation=record.generation,
            previous_key_id=record.key_id,
            reason=reason,
            started_at=self._clock.now(),
        )
        unchanged = f"nothing was reissued; the root key {record.key_id} is still in force"
        try:
            journaled = await self._write(attrs.evolve(record, pending=pending), record.generation)
        except StoreError as exc:
            raise RotationError(
                f"the key store cannot be written ({exc}); {unchanged}",
                previous_key_id=record.key_id,
            ) from exc
        if not self._recreate_sub_keys:
            return journaled
        try:
            children = [
                ChildSpec(
                    name=detail.key.name or detail.key.id,
                    quota_requests_per_month_override=detail.key.quota_requests_per_month_override,
                    rate_requests_per_minute_override=detail.key.rate_requests_per_minute_override,
                )
                async for detail in self._client.sub_keys.iterate()
            ]
            pending = attrs.evolve(pending, children=tuple(children))
            return await self._write(attrs.evolve(record, pending=pending), record.generation)
        except CS2CapError as exc:  # StoreError included
            await self._write(record, record.generation)  # close the journal again
            raise RotationError(
                f"could not record the child keys ({exc}); {unchanged}",
                previous_key_id=record.key_id,
            ) from exc

    async def _reissue_and_save(self, record: KeyRecord) -> KeyRecord:
        assert record.pending is not None
        previous = record.pending.previous_key_id
        try:
            new = await self._client.reissue_key(use_new_key=False)
        except KeyLostError as lost:
            return await self._recover(record, lost)
        except ReissueOutcomeUnknownError as exc:
            raise RotationError(
                f"could not tell whether the root key {previous} was reissued ({exc}). The "
                "journal stays open: the next check probes the key and finishes or recovers.",
                previous_key_id=previous,
            ) from exc
        except CS2CapError as exc:
            await self._write(attrs.evolve(record, pending=None), record.generation)
            raise RotationError(
                f"the reissue failed ({exc}); nothing was revoked, the root key {previous} "
                "is still in force",
                previous_key_id=previous,
            ) from exc
        await self._passed("reissued")
        return await self._save_new_key(record, new.key, new.id)

    async def _recover(self, record: KeyRecord, lost: KeyLostError) -> KeyRecord:
        """The reissue happened and its key was lost: reissue again with the session JWT."""
        assert record.pending is not None
        previous = record.pending.previous_key_id
        if self._recovery_token is None:
            self._halted = RotationError(
                _LOST_WITHOUT_RECOVERY.format(key_id=previous), previous_key_id=previous
            )
            raise self._halted from lost
        logger.warning("the new root key was lost (%s); recovering with the recovery token", lost)
        async with AccountClient(
            session_token=self._recovery_token,
            base_url=self._client.base_url,
            clock=self._clock,
            allow_insecure_http=True,  # the same base URL the main client already accepted
        ) as rescuer:
            # Every reissue that takes effect here replaces a lost key, and is counted as a
            # recovery: the one that succeeds, each whose response was lost in turn, and one
            # from an earlier recovery that ended not knowing, if the active key moved since.
            lost_ids: list[str] = []
            try:
                active = (await rescuer.get_key()).id
                if self._unresolved_rescue not in (None, active):
                    self._recoveries += 1
                self._unresolved_rescue = None
                new = await rescuer.reissue_key(
                    use_new_key=False, on_lost=lambda info: lost_ids.append(info.id)
                )
            except CS2CapError as exc:
                if isinstance(exc, ReissueOutcomeUnknownError):
                    self._unresolved_rescue = lost_ids[-1] if lost_ids else active
                raise RotationError(
                    f"the root key {previous} was lost and recovering it with the recovery "
                    f"token failed ({exc}); the journal stays open, the next check retries",
                    previous_key_id=previous,
                ) from exc
            finally:
                self._recoveries += len(lost_ids)
        self._recoveries += 1
        return await self._save_new_key(record, new.key, new.id)

    async def _save_new_key(self, record: KeyRecord, key: SecretKey, key_id: str) -> KeyRecord:
        """5-6. Save the new key as the next generation, durably, then switch to it."""
        saved = KeyRecord(
            generation=record.generation + 1,
            key=key,
            key_id=key_id,
            saved_at=self._clock.now(),
            pending=record.pending,
            kept_aside=record.kept_aside,
        )
        try:
            await self._write(saved, record.generation)
        except StaleGenerationError as exc:
            try:
                await self._keep_aside(key)
            except StoreError as aside:
                raise RotationError(
                    f"the new key {key_id} was fenced off (the store moved to generation "
                    f"{exc.stored_generation}) and could not be kept aside either ({aside})",
                    previous_key_id=record.key_id,
                ) from exc
            raise RotationError(
                f"the new key {key_id} was fenced off: the store moved to generation "
                f"{exc.stored_generation} meanwhile. The key is kept aside in the store, "
                "since it may be the only live one.",
                previous_key_id=record.key_id,
            ) from exc
        except StoreError as exc:
            self._unsaved = saved
            self._client.use_key(key)
            raise RotationError(
                f"the new key {key_id} could not be saved ({exc}). This process uses it "
                "and saves it at the next check; other processes hold the revoked key.",
                previous_key_id=record.key_id,
            ) from exc
        self._unsaved = None
        self._hold(saved)
        await self._passed("saved")
        return saved

    async def _complete(self, record: KeyRecord) -> RotationEvent:
        """7-9. Verify the new key, re-create the children, announce, close the journal."""
        pending = record.pending
        assert pending is not None
        if not await self._verify(record):
            # The saved key never authenticated: a reissue landed after it (e.g. a timed-out
            # attempt completing late). Only the recovery token can mend that.
            lost = KeyLostError(
                f"the new root key {record.key_id} does not authenticate",
                previous_key_id=record.key_id,
            )
            record = await _finish_even_if_cancelled(self._recover(record, lost))
            if not await self._verify(record):
                raise RotationError(
                    f"the recovered root key {record.key_id} does not authenticate either",
                    previous_key_id=pending.previous_key_id,
                )
        await self._passed("verified")
        record, made, failed = await self._recreate_children(record, pending.children)
        await self._passed("children")
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
        event = await self._announce(event)
        await self._passed("announced")
        try:
            await self._write(attrs.evolve(record, pending=None), record.generation)
        except StoreError as exc:
            logger.warning("could not close the rotation journal (%s); the next check will", exc)
        return event

    async def _verify(self, record: KeyRecord) -> bool:
        """7. Whether the new key authenticates (a 401 may be propagation delay: retried).

        A verification that cannot get an answer (network, 5xx) counts as passed: the key
        was just issued and saved, and the next call will tell.
        """
        try:
            async for attempt in retrying(
                attempts=_VERIFY_ATTEMPTS,
                clock=self._clock,
                retry=retry_if_exception_type(AuthenticationError),
            ):
                with attempt:
                    info = await self._client.get_key(key=record.key)
        except AuthenticationError as exc:
            logger.error("the new root key %s does not authenticate: %s", record.key_id, exc)
            return False
        except CS2CapError as exc:
            logger.warning("could not verify the new key %s (%s); going on", record.key_id, exc)
            return True
        if info.id != record.key_id:
            logger.warning("the new key reports id %s, not %s", info.id, record.key_id)
        return True

    async def _recreate_children(
        self, record: KeyRecord, children: tuple[ChildSpec, ...]
    ) -> tuple[KeyRecord, dict[str, CreatedSubKey], dict[str, BaseException]]:
        """8. Re-create each child key with its name and overrides, saving each.

        A child that an interrupted attempt created but never saved (its plaintext went
        with the attempt) is reissued, not created again, so no orphan keeps its name.
        """
        made: dict[str, CreatedSubKey] = {}
        failed: dict[str, BaseException] = {}
        orphans = await self._orphaned_children(record, children)
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
            entry = StoredSubKey(key=child.key, id=child.key_info.id)
            try:
                record = await self._write(
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

    async def _announce(self, event: RotationEvent) -> RotationEvent:
        """9. Callbacks, then `events()` subscribers; once per generation in this process."""
        if event.generation <= self._announced:
            return event
        self._announced = event.generation
        failures = await run_callbacks(
            self._callbacks,
            event,
            timeout=self._callback_timeout,
            attempts=_CALLBACK_ATTEMPTS,
            clock=self._clock,
        )
        event = attrs.evolve(event, callback_errors=failures)
        self._last_event = event
        for queue in self._subscribers:
            queue.put_nowait(event)
        logger.info(
            "root key rotated: %s -> %s (generation %d, %s)",
            event.previous_key_id,
            event.key_id,
            event.generation,
            event.reason,
        )
        return event

    # -- catching up with the store -------------------------------------------------------

    async def _catch_up(self) -> RotationEvent | None:
        """Adopt a newer stored key, or finish a journal left open; never reissue.

        Adopting only reads the store, so it needs no lock: a fleet's followers switch
        together rather than one lease holder after another.
        """
        record = await self._store.load()
        if record is not None and record.pending is None and self._unsaved is None:
            if record.generation == self._generation:
                return None
            return await self._adopt(record)
        async with self._store.lock():
            return await self._catch_up_locked()

    async def _catch_up_locked(self) -> RotationEvent | None:
        record = await self._store.load()
        if record is None:
            await self._initialise()
            return None
        if self._halted is not None and record.generation == self._generation:
            return None  # the key is lost: wait for a new one to appear in the store
        if self._unsaved is not None and record.generation + 1 == self._unsaved.generation:
            saved = await self._save_new_key(record, self._unsaved.key, self._unsaved.key_id)
            return await self._complete(saved)
        if record.pending is not None:
            event = await self._resume(record)
            if event is not None:
                return event
            record = await self._load()
        if record.generation != self._generation:
            return await self._adopt(record)
        return None

    async def _initialise(self) -> None:
        """First use of an empty store: the client's key becomes generation 1."""
        info = await self._client.get_key()
        record = KeyRecord(
            generation=1, key=self.current_key, key_id=info.id, saved_at=self._clock.now()
        )
        await self._write(record, None)
        self._hold(record)
        self._announced = record.generation

    async def _resume(self, record: KeyRecord) -> RotationEvent | None:
        """Finish a rotation whose journal was left open (by a crash or a failure)."""
        pending = record.pending
        assert pending is not None
        promoted = await self._promote_kept_aside(record)
        if promoted is not None:
            self._hold(promoted)
            return await self._complete(promoted)
        if record.generation > pending.from_generation:
            logger.warning("finishing an interrupted rotation to generation %d", record.generation)
            self._hold(record)
            return await self._complete(record)
        try:
            await self._client.get_key(key=record.key)
        except AuthenticationError as exc:
            logger.warning("an interrupted rotation lost the new key of %s", record.key_id)
            lost = KeyLostError(str(exc), previous_key_id=record.key_id)
            saved = await _finish_even_if_cancelled(self._recover(record, lost))
            return await self._complete(saved)
        logger.info("an interrupted rotation had not reissued %s; closing it", record.key_id)
        await self._write(attrs.evolve(record, pending=None), record.generation)
        return None

    async def _adopt(self, record: KeyRecord) -> RotationEvent | None:
        """Hold the stored key; announce it if it is new to this process."""
        starting = self._generation == 0
        previous_id = self._key_id
        same_key = record.key == self._client.api_key
        self._hold(record)
        self._halted = None
        if (starting and same_key) or record.generation <= self._announced:
            self._announced = max(self._announced, record.generation)
            return None
        logger.info("adopting generation %d of the root key from the store", record.generation)
        made: dict[str, CreatedSubKey] = {}
        for name, stored in record.sub_keys.items():
            try:
                detail = await self._client.sub_keys.get(stored.id)
            except CS2CapError:
                continue
            made[name] = CreatedSubKey(key=stored.key, key_info=detail.key)
        event = RotationEvent(
            new_key=record.key,
            key_id=record.key_id,
            previous_key_id=previous_id,
            generation=record.generation,
            rotated_at=record.saved_at,
            reason="adopted",
            sub_keys=made,
        )
        return await self._announce(event)

    async def _reload(self) -> SecretKey | None:
        """After a 401 on an ordinary call: the stored key if it is another one. Never reissues.

        If the stored key is the one refused and a key kept aside still authenticates, that
        key is promoted to the next generation first, and returned. While this process is
        rotating, the refusal is most likely its own reissue landing: the call waits for the
        rotation to switch the client to the new key (and the session sends it again).
        """
        rotation = self._inflight
        if rotation is not None and not rotation.done() and rotation is not asyncio.current_task():
            switched = asyncio.ensure_future(self._switched.wait())
            try:
                await asyncio.wait({rotation, switched}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                switched.cancel()
            return None
        record = await self._store.load()
        if record is not None and record.key == self._client.api_key and record.kept_aside:
            try:
                record = await self._promote_kept_aside(record) or record
            except CS2CapError as exc:  # fenced by another writer, or the probe failed
                logger.warning("could not promote a kept-aside key (%s)", exc)
                record = await self._store.load()
        if record is None or record.key == self._client.api_key:
            return None
        if not any(not task.done() for task in self._background):
            self._spawn(self._catch_up())
        return record.key

    async def _promote_kept_aside(self, record: KeyRecord) -> KeyRecord | None:
        """Promote a kept-aside key that authenticates when the stored one no longer does.

        It is saved as the next generation (journal unchanged) and the new record returned;
        None if there is nothing to promote. A fenced save keeps its reissued key aside;
        when that key is the live one (its reissue revoked the stored key), this is how it
        comes back into use.
        """
        if not record.kept_aside or await self._authenticates(record.key):
            return None
        for key in reversed(record.kept_aside):
            try:
                info = await self._client.get_key(key=key)
            except AuthenticationError:
                continue
            logger.warning(
                "the stored root key %s no longer authenticates; promoting the kept-aside "
                "key %s to generation %d",
                record.key_id,
                info.id,
                record.generation + 1,
            )
            promoted = attrs.evolve(
                record,
                generation=record.generation + 1,
                key=key,
                key_id=info.id,
                saved_at=self._clock.now(),
                sub_keys={},
                kept_aside=tuple(k for k in record.kept_aside if k != key),
            )
            return await self._write(promoted, record.generation)
        return None

    async def _authenticates(self, key: SecretKey) -> bool:
        try:
            await self._client.get_key(key=key)
        except AuthenticationError:
            return False
        return True

    # -- small helpers --------------------------------------------------------------------

    # A seam for crash tests: awaited with the name of each protocol step just completed
    # ("journaled", "reissued", "saved", "verified", "children", "announced"), so a test can
    # kill the process at that point. None in normal use.
    _after_step: Callable[[str], Awaitable[None]] | None = None

    async def _passed(self, step: str) -> None:
        if self._after_step is not None:
            await self._after_step(step)

    def _hold(self, record: KeyRecord) -> None:
        if record.key != self._client.api_key:
            self._client.use_key(record.key)
            self._switched.set()
            self._switched = asyncio.Event()
        self._generation = record.generation
        self._key_id = record.key_id

    async def _load(self) -> KeyRecord:
        record = await self._store.load()
        if record is None:
            raise RotationError("the key store is empty; it was cleared during a rotation")
        return record

    async def _write(self, record: KeyRecord, expected: int | None) -> KeyRecord:
        """Save `record` if the store is at generation `expected`; retry transient errors.

        A retried save can find its own earlier attempt stored (that attempt failed only in
        reporting success): that counts as done, not as being fenced off.
        """
        try:
            async for attempt in retrying(
                attempts=_STORE_ATTEMPTS,
                clock=self._clock,
                retry=_transient_store_error,
            ):
                with attempt:
                    await self._store.save(record, expected_generation=expected)
        except StaleGenerationError:
            if await self._store.load() != record:
                raise
        return record

    async def _keep_aside(self, key: SecretKey) -> None:
        """Add `key` to the stored record's kept-aside keys, at whatever generation it is.

        Fenced saves reload and try again, transient errors back off; bounded both ways.
        """
        async for attempt in retrying(
            attempts=2 * _STORE_ATTEMPTS,
            clock=self._clock,
            retry=retry_if_exception_type(StoreError),
        ):
            with attempt:
                latest = await self._load()
                if key not in latest.kept_aside:
                    await self._store.save(
                        attrs.evolve(latest, kept_aside=(*latest.kept_aside, key)),
                        expected_generation=latest.generation,
                    )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("catching up with the key store failed: %s", task.exception())

    def _rotation_done(self, task: asyncio.Task[RotationEvent]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: a rotation nobody awaited any more is not "lost"


# A store error may pass; a fenced save (a newer generation is stored) never will.
_transient_store_error = retry_if_exception(
    lambda exc: isinstance(exc, StoreError) and not isinstance(exc, StaleGenerationError)
)


def _log_failed_check(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.error("rotation check failed (%s); next try in %.1f s", error, wait)


async def _finish_even_if_cancelled(aw: Awaitable[T]) -> T:
    """Await `aw` to the end even if the caller is cancelled meanwhile; then re-raise that."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue
        if not task.cancelled() and task.exception() is not None:
            logger.error("interrupted while finishing: %s", task.exception())
        raise
