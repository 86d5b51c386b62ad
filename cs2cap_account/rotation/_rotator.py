"""`KeyRotator`: rotate the root key on a schedule or on demand, and never lose it.

The public surface, and the wiring of the rooms that do the work:

- `_journal`: what a stored record means and what it calls for next (pure);
- `_catch_up`: carries out those steps (adopt, finish a journal, save a held key, and
  the reload after a 401);
- `_protocol`: the nine-step rotation, and completing or recovering one;
- `_child_rotation` (with `_child_journal`, pure): child keys on their own schedule;
- `_recovery`: reissuing with the recovery token after a key was lost;
- `_store_io`: retried compare-and-set writes; `_announce`: callbacks and `events()`;
- `_loops`: the schedule and following the store; `_holding`: what this process holds;
- `_steps`: the named steps, and the seam crash tests hook into
  (`cs2cap_account.testing.after_step`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._models import KeyInfo
from cs2cap_account._ratelimit import ROTATION_RESERVE, rotation_requests
from cs2cap_account._reissue import REVOKED_CODES
from cs2cap_account._retry import backoff_capped_at, before_each_wait, retrying
from cs2cap_account._secret import SecretKey
from cs2cap_account.errors import AuthenticationError, StoreError
from cs2cap_account.rotation._announce import Announcer
from cs2cap_account.rotation._arguments import (
    checked_callback,
    checked_child_name,
    checked_children,
    checked_flag,
    checked_fraction,
    checked_reason,
    checked_seconds,
    checked_span,
    checked_token,
)
from cs2cap_account.rotation._callbacks import Callback
from cs2cap_account.rotation._catch_up import CatchUp
from cs2cap_account.rotation._child_rotation import ChildRotations
from cs2cap_account.rotation._event import ChildRotationEvent, RotationEvent
from cs2cap_account.rotation._failure import FAILURE_EVENTS, FailureEvent, RotationStage
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._loops import follow, schedule
from cs2cap_account.rotation._observe import Observer
from cs2cap_account.rotation._protocol import Protocol, key_expired
from cs2cap_account.rotation._recovery import Recovery
from cs2cap_account.rotation._schedule import due, server_check_due, stored_key_info
from cs2cap_account.rotation._status import RotatorStatus
from cs2cap_account.rotation._steps import StepHooks
from cs2cap_account.rotation._store_io import StoreIO
from cs2cap_account.rotation._tasks import Background, finish_even_if_cancelled
from cs2cap_account.sinks._protocol import KeySink
from cs2cap_account.sinks._publish import Publisher, checked_sinks
from cs2cap_account.stores._memory import MemoryKeyStore
from cs2cap_account.stores._protocol import KeyStore
from cs2cap_account.stores._record import KeyRecord

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["KeyRotator"]

logger: Final = logging.getLogger("cs2cap_account.rotation")

READY_WAIT: Final = 10.0
"""Seconds `async with rotator:` waits, after a first try to read the store failed,
before going on with the client's own key."""
_ENTER_BACKOFF_CAP: Final = 30.0  # seconds between tries to read an unreachable store


def _observed(
    check: Callable[[KeyRotator], Awaitable[RotationEvent | None]],
) -> Callable[[KeyRotator], Awaitable[RotationEvent | None]]:
    """Record each check's outcome for `status()`, and report its failure (`on_failure`)."""

    @functools.wraps(check)
    async def observed(self: KeyRotator) -> RotationEvent | None:
        self._observer.check_started()
        try:
            event = await check(self)
        except Exception as exc:
            await self._observer.check_failed(exc)
            raise
        await self._observer.check_ended(event)
        return event

    return observed


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
    Each new key is published to `sinks` (`cs2cap_account.sinks`) once saved and
    verified, before the callbacks; each attempt within `callback_timeout`.

    With `child_max_age`, child keys rotate on their own schedule: each check, every
    child in `children` (names; by default every child the store records) older than
    that is reissued through its own route, one at a time, journaled in the store, saved,
    verified with its new key and announced (`on_child_rotate`); the root key and the
    other children are left alone. `child_keys` holds the child keys in force.
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
        sinks: Iterable[KeySink] | None = None,
        child_max_age: dt.timedelta | float | None = None,
        children: Iterable[str] | None = None,
    ) -> None:
        token = checked_token(recovery_token, "recovery_token")
        # The plaintext stays in the SecretKey alone, not in this frame's locals, which an
        # error reporter captures if a check below raises.
        del recovery_token
        _check_settings(client, store)
        self._client = client
        self._clock = client.clock
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._max_age = checked_span(max_age, "max_age")
        self._before_expiry = checked_span(before_expiry, "before_expiry")
        self._check_interval = checked_seconds(check_interval, "check_interval")
        self._jitter = checked_fraction(jitter, "jitter")
        recreate_sub_keys = checked_flag(recreate_sub_keys, "recreate_sub_keys")
        callback_timeout = checked_seconds(callback_timeout, "callback_timeout")
        child_max_age = checked_span(child_max_age, "child_max_age")
        managed_children = checked_children(children)
        self._seen: _Seen | None = None  # the key the last check saw: the schedule's guard
        self._io = StoreIO(self._store, self._clock)
        self._holding = Holding(client)
        self._recovery = Recovery(client, token)
        # Each new key goes to the sinks (cs2cap_account.sinks) before the callbacks.
        self._publisher = Publisher(checked_sinks(sinks), self._clock, callback_timeout)
        self._announcer = Announcer(self._holding, self._clock, callback_timeout, self._publisher)
        self._steps = StepHooks()  # the crash-test seam: cs2cap_account.testing.after_step
        self._background = Background()
        self._protocol = Protocol(
            client,
            self._clock,
            self._io,
            self._holding,
            self._recovery,
            self._announcer,
            self._steps,
            recreate_sub_keys,
        )
        self._children = ChildRotations(
            client,
            self._clock,
            self._io,
            self._holding,
            self._announcer,
            self._steps,
            child_max_age,
            managed_children,
            self._report_child_failure,
        )
        self._catch_up = CatchUp(
            client,
            self._clock,
            self._io,
            self._holding,
            self._protocol,
            self._announcer,
            self._background,
            self._children,
        )
        self._inflight: asyncio.Task[RotationEvent] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._entry_failed = asyncio.Event()  # a try to learn the key in force failed
        self._entry_error: BaseException | None = None
        client.on_unauthorized(self._after_refusal)
        self._observer = Observer(
            client,
            self._holding,
            self._store,
            self._announcer,
            self._recovery,
            self._clock,
            self._max_age,
            self._before_expiry,
        )
        self._steps.add(self._observer.passed)
        # Ordinary calls leave a few sends of each window to the rotator's requests.
        client._reserve_for_rotation(ROTATION_RESERVE)

    def __repr__(self) -> str:
        if not hasattr(self, "_holding"):  # a half-built rotator, shown in captured locals
            return "KeyRotator(<not initialised>)"
        return f"KeyRotator(store={self._store!r}, generation={self.generation})"

    def on_rotate(self, callback: Callback) -> Callback:
        """Register `callback(event)`, sync or async, to run after every new key.

        Usable as a decorator. Callbacks run concurrently, each within `callback_timeout`,
        retried with backoff on failure; a failure is logged and listed in
        `event.callback_errors` and never undoes the rotation.
        """
        checked_callback(callback)
        self._announcer.callbacks.append(callback)
        return callback

    def on_child_rotate(
        self, callback: Callable[[ChildRotationEvent], object]
    ) -> Callable[..., object]:
        """Register `callback(event)`, sync or async, to run after every new child key.

        Usable as a decorator. `event` is a `ChildRotationEvent`: a child rotated on its
        own schedule (`child_max_age`), by `rotate_child_now()`, or by another process and
        adopted from the store. Run like `on_rotate` callbacks. The child keys re-created
        after a root rotation come with its `RotationEvent` (`sub_keys`) instead.
        """
        checked_callback(callback)
        self._announcer.child_callbacks.append(callback)
        return callback

    @property
    def child_keys(self) -> Mapping[str, SecretKey]:
        """The child keys in force as this process knows them from the store, by name.

        A read-only view, updated as child keys rotate (here or elsewhere) and as root
        rotations re-create them.
        """
        return MappingProxyType({name: e.key for name, e in self._holding.children.items()})

    async def rotate_child_now(self, name: str, reason: str = "manual") -> ChildRotationEvent:
        """Rotate the child key `name` now, whatever its age, and return the event.

        Under the store's lock, journaled like a scheduled child rotation; one left open
        (by a crash) is finished and told first, then the child is reissued again, so the
        event returned is always of a reissue this call made. The child's key comes from
        the store, or, for a child the store does not hold yet, the one active child of
        that name is found by listing: its new key is then stored. The root key is never
        reissued. `RotationError` if it cannot be done; a lost answer is recovered with
        the root key.
        """
        name = checked_child_name(name)
        reason = checked_reason(reason)
        with rotation_requests():
            try:
                await self._catch_up.catch_up()  # the root key in force comes first
                return await self._children.rotate_now(name, reason)
            except Exception as exc:
                await self._observer.report(exc, rotating=True, stage=RotationStage.CHILDREN)
                raise

    async def _report_child_failure(self, error: BaseException) -> None:
        """A scheduled child rotation failed: one `RotationFailed` at the children's stage."""
        await self._observer.report(error, rotating=True, stage=RotationStage.CHILDREN)

    @property
    def current_key(self) -> SecretKey:
        """The root key in force in this process, for code that builds its own clients."""
        return self._holding.key

    @property
    def generation(self) -> int:
        """The store generation of `current_key` (0 before the rotator first looked)."""
        return self._holding.generation

    @property
    def recoveries(self) -> int:
        """How many lost reissues this rotator recovered with the recovery token."""
        return self._recovery.recoveries

    def on_failure(self, callback: Callable[[FailureEvent], object]) -> Callable[..., object]:
        """Register `callback(event)`, sync or async, for every failure, halt and recovery.

        Usable as a decorator. `event` is a `RotationFailed` (a check or rotation failed:
        its stage, the key's state afterwards, the error, what to do), a `RotationHalted`
        (a key was lost and there is no recovery token) or a `RotationRecovered` (a lost
        key replaced, or a halt lifted). Run like `on_rotate` callbacks: concurrently,
        within `callback_timeout`, retried; a failing one is logged and never fatal.
        """
        checked_callback(callback)
        self._announcer.failure_callbacks.append(callback)
        return callback

    async def status(self, *, verify: bool = False) -> RotatorStatus:
        """A snapshot of this rotator: the key in force, the schedule, troubles, the store.

        Reads the store once (for `store_reachable`, `journal_open`, `kept_aside`) and
        never rotates. It makes no API call, unless `verify` is true and nothing has told
        yet whether the key in force authenticates (a key adopted from the store since the
        last check): then one `GET /account/key` with it, once per key. See `RotatorStatus`.
        """
        if checked_flag(verify, "verify"):
            await self._observer.verify()
        sinks = self._publisher.published()  # empty without sinks
        return await self._observer.status(sinks, child_max_age=self._children.max_age)

    async def rotate_now(self, reason: str = "manual") -> RotationEvent:
        """Rotate away from the key this process holds, and return the event.

        Concurrent callers share one rotation. If the store already holds a newer key
        (another process rotated), that key is adopted instead of reissuing again. Needs
        no `start()`: a rotator made for one rotation can just call this.

        A key that has expired cannot reissue itself: it is replaced with the recovery
        token (a session JWT) if there is one; without one, `RotationError` says how to.
        """
        reason = checked_reason(reason)
        if self._inflight is None:
            task = asyncio.ensure_future(self._rotate_observed(reason, self.current_key))
            task.add_done_callback(self._rotation_done)
            self._inflight = task
        return await asyncio.shield(self._inflight)

    @overload
    def events(
        self, *, failures: Literal[False] = False, children: Literal[False] = False
    ) -> AsyncGenerator[RotationEvent, None]: ...

    @overload
    def events(
        self, *, failures: Literal[True], children: Literal[False] = False
    ) -> AsyncGenerator[RotationEvent | FailureEvent, None]: ...

    @overload
    def events(
        self, *, failures: Literal[False] = False, children: Literal[True]
    ) -> AsyncGenerator[RotationEvent | ChildRotationEvent, None]: ...

    @overload
    def events(
        self, *, failures: bool, children: bool
    ) -> AsyncGenerator[RotationEvent | ChildRotationEvent | FailureEvent, None]: ...

    def events(
        self, *, failures: bool = False, children: bool = False
    ) -> AsyncGenerator[Any, None]:
        """Every `RotationEvent` from the moment iteration starts, as it is announced.

        With `failures=True`, every `RotationFailed`, `RotationHalted` and
        `RotationRecovered` too, in order with the new keys (see `on_failure`). With
        `children=True`, every `ChildRotationEvent` too (see `on_child_rotate`): a
        consumer of root keys alone never mistakes a child's key for the root's.
        """
        kinds: tuple[type, ...] = (RotationEvent,)
        if checked_flag(failures, "failures"):
            kinds += FAILURE_EVENTS
        if checked_flag(children, "children"):
            kinds += (ChildRotationEvent,)
        return self._announcer.subscribe(*kinds)

    async def run(self) -> None:
        """Run the schedule until cancelled: check at once, then every `check_interval`.

        A failing check is logged and retried with backoff; the loop never ends by itself.
        If the store can announce changes (`store.changes()`, e.g. Redis), the rotator also
        follows them, adopting another process's new key as soon as it is saved.
        Use `start()`/`stop()` or `async with rotator:`, or hand this to a TaskGroup.

        It first learns the key in force (`wait_ready()`): it reads the store, adopts a
        newer key, resumes an open journal; a store that cannot be read is tried again
        with backoff until it can. Its requests go ahead of ordinary calls.
        """
        with rotation_requests():
            await self._enter()
            await self._loops()

    async def _enter(self) -> None:
        """Catch up with the store until that succeeds; then the rotator is ready."""
        async for attempt in retrying(
            attempts=None,
            clock=self._clock,
            wait=backoff_capped_at(min(_ENTER_BACKOFF_CAP, self._check_interval)),
            before_sleep=before_each_wait(self._log_failed_entry),
        ):
            with attempt:
                try:
                    await self._catch_up.catch_up()
                except Exception as exc:
                    self._entry_error = exc
                    self._entry_failed.set()
                    raise
        self._entry_error = None
        self._ready.set()

    def _log_failed_entry(self, error: BaseException | None, wait: float) -> None:
        logger.error(
            "rotation check failed: the root key in force could not be learnt from the "
            "store (%s); next try in %.1f s",
            error,
            wait,
        )

    async def wait_ready(self, timeout: float = READY_WAIT) -> bool:
        """Wait until the key in force is known: True, or False after `timeout` seconds.

        Known means the running rotator (`start()`, called here if it was not) read the
        store, adopted a newer key and resumed an open journal; `current_key` is then the
        stored key. A store that
        cannot be read is retried in the background: `timeout` seconds (on the client's
        clock) after the first try failed, this returns False, logging why, and the client
        keeps its own key until the store answers.
        """
        timeout = checked_seconds(timeout, "timeout")
        if self._ready.is_set():
            return True
        self.start()
        ready = asyncio.ensure_future(self._ready.wait())
        bound = asyncio.ensure_future(self._give_up_after(timeout))
        try:
            await asyncio.wait({ready, bound}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            bound.cancel()
        if self._ready.is_set():
            return True
        logger.warning(
            "going on with the client's root key %s: the key in force could not be learnt "
            "from the store within %g s (%s); still trying in the background",
            self._holding.key_id or "(not yet stored)",
            timeout,
            self._entry_error or "no answer yet",
        )
        return False

    async def _give_up_after(self, timeout: float) -> None:
        """Return `timeout` seconds after a try to learn the key in force failed."""
        await self._entry_failed.wait()
        await self._clock.sleep(timeout)

    async def _loops(self) -> None:
        """The schedule, and following the store's changes if it announces them."""
        checks = schedule(
            self._scheduled_check,
            clock=self._clock,
            interval=self._check_interval,
            jitter=self._jitter,
        )
        changes: Callable[[], AsyncIterator[int]] | None = getattr(self._store, "changes", None)
        if changes is None:
            await checks
            return
        following = follow(
            changes,
            held_generation=lambda: self._holding.generation,
            catch_up=self._catch_up.follow_up,
            clock=self._clock,
        )
        await asyncio.gather(checks, following)

    def start(self) -> asyncio.Task[None]:
        """Run the schedule in a background task (once) and return it.

        `await rotator.wait_ready()` then returns once the key in force is known.
        """
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.ensure_future(self.run())
        return self._loop_task

    async def stop(self) -> None:
        """Stop the schedule and any rotation in flight, and wait until all have ended.

        A reissue and the save of its key are never interrupted: they finish first. A
        rotation stopped after that is completed (verify, children, callbacks) by the next
        rotator to look at the store.
        """
        tasks = [t for t in (self._loop_task, self._inflight, *self._background.tasks) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await finish_even_if_cancelled(asyncio.gather(*tasks, return_exceptions=True))
        self._loop_task = None

    async def __aenter__(self) -> KeyRotator:
        """Start, and return once the key in force is known (or `READY_WAIT` passed)."""
        self.start()
        await self.wait_ready()
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
        from cs2cap_account.integrations.aiohttp_app import attach

        attach(self, app)

    @_observed
    async def check(self) -> RotationEvent | None:
        """One scheduled check: catch up with the store, then rotate if the key is due.

        Returns the event of a rotation this check finished, adopted or made, if any.
        It asks the server about the key. The checks of the schedule (`run()`) mostly do
        not: one per fleet and `check_interval` does (`_schedule.server_check_due`), and
        writes what it learnt into the store, from which the others compute the schedule;
        a key that looks due by the record is confirmed with the server before rotating.
        """
        with rotation_requests():
            return await self._check(shared=False)

    @_observed
    async def _scheduled_check(self) -> RotationEvent | None:
        """A check of the schedule: the key's metadata from the store, mostly."""
        return await self._check(shared=True)

    async def _check(self, *, shared: bool) -> RotationEvent | None:
        caught_up = await self._catch_up.catch_up()
        await self._announcer.republish()  # a sink that missed the key held gets it now
        if self._holding.halted is not None:
            logger.error("not rotating: %s", self._holding.halted)
            return caught_up
        sent = self.current_key
        try:
            info = await self._key_info(shared=shared)
        except AuthenticationError as exc:
            if key_expired(exc):
                logger.warning("the root key %s has expired; replacing it", self._holding.key_id)
                return await self.rotate_now("expired")
            if exc.code not in REVOKED_CODES:
                raise
            # Revoked with no journal to say why (the hook found nothing newer stored).
            recovered = await self._catch_up.after_revoked(sent, exc)
            if recovered is None:
                raise
            return recovered
        reason = self._due(info)
        if reason is None:
            await self._children.check()  # each due child, on its own; the root stays
            return caught_up
        logger.info("root key %s is due for rotation (%s)", info.id, reason)
        return await self.rotate_now(reason)

    async def _key_info(self, *, shared: bool) -> KeyInfo:
        """The key's metadata: from the stored record, or else from the server.

        The server is asked once per fleet and interval, or to confirm that a key is due;
        what it says is written back into the record for the others. Not `shared`: the
        server is asked in any case.
        """
        if not shared:
            # Under the lock too: the write of what the server said must not come between
            # a child rotation's reading of the record and its save.
            async with self._store.lock():
                return await self._ask_server(await self._io.load())
        if (stored := self._from_store(await self._io.load())) is not None:
            return stored
        async with self._store.lock():  # one process asks, the others wait and read
            record = await self._io.load()
            if (stored := self._from_store(record)) is not None:
                return stored  # another process asked the server meanwhile
            return await self._ask_server(record)

    async def _ask_server(self, record: KeyRecord | None) -> KeyInfo:
        """`GET /account/key`, and what it says written into `record` for the fleet.

        Written only over the very record read (read again just before), with no journal
        open: a write at the same generation must not take away what another writer
        added meanwhile (a journal, a key kept aside).
        """
        info = await self._client.get_key()
        if (
            record is None
            or record.pending is not None
            or record.key_id != info.id
            or not self._holding.sends(record)
        ):
            return info
        checked = attrs.evolve(record, key_info=info, checked_at=self._clock.now())
        try:
            if await self._io.load() == record:
                await self._store.save(checked, expected_generation=record.generation)
        except StoreError as exc:  # fenced by a newer save, or the store failed
            logger.warning("could not store the key's metadata (%s)", exc)
        return info

    def _from_store(self, record: KeyRecord | None) -> KeyInfo | None:
        """The stored metadata of the key held here, if it will do for this check.

        It will unless the fleet's server check is due, or the key looks due by it (then
        the server's clock, not this process's, decides).
        """
        held = self._holding.key_id
        stored = stored_key_info(record, held)
        if stored is None or server_check_due(
            record, held, now=self._clock.now(), interval=self._check_interval
        ):
            return None
        return stored if self._due(stored, from_store=True) is None else None

    def _due(self, info: KeyInfo, *, from_store: bool = False) -> str | None:
        """Whether the key `info` describes is due, on the server's clock (`_schedule`).

        `from_store`: `info` comes from the stored record, so there is no `Date` to
        measure against; the local clock stands in (and the server confirms before a
        rotation).
        """
        seen = self._seen
        if seen is None or seen.key_id != info.id:
            # The first key seen has been in use for who knows how long; a later one
            # since now (the monotonic clock bounds the schedule when no `Date` came).
            since = None if seen is None else self._clock.monotonic()
            seen = self._seen = _Seen(info.id, since)
        held_for = None if seen.since is None else self._clock.monotonic() - seen.since
        verdict = due(
            info,
            server_now=None if from_store else self._client.server_date,
            local_now=self._clock.now(),
            max_age=self._max_age,
            before_expiry=self._before_expiry,
            held_for=None if held_for is None else dt.timedelta(seconds=held_for),
            first_seen_at=seen.first_seen_at,
        )
        self._observer.saw(info, created_at=verdict.created_at, due_reason=verdict.reason)
        if verdict.created_in_future and seen.first_seen_at is None:
            logger.warning(
                "the root key %s was created at %s by the server's account, which is in the "
                "future of the server's own time; its age counts from now",
                info.id,
                info.created_at.isoformat(),
            )
            self._seen = attrs.evolve(seen, first_seen_at=verdict.created_at)
        return verdict.reason

    async def _rotate_observed(self, reason: str, held: SecretKey) -> RotationEvent:
        """`_rotate`, inside the instrumentation's contexts; its failure is reported."""
        with self._observer.rotation(reason):
            try:
                event = await self._rotate(reason, held)
            except Exception as exc:
                await self._observer.report(exc, rotating=True)
                raise
        await self._observer.notice()
        return event

    async def _rotate(self, reason: str, held: SecretKey) -> RotationEvent:
        """Under the store's lock: catch up, then rotate unless that already moved the key.

        Its requests are the rotator's own: they go ahead of ordinary calls.
        """
        with rotation_requests():
            return await self._rotate_locked(reason, held)

    async def _rotate_locked(self, reason: str, held: SecretKey) -> RotationEvent:
        async with self._store.lock():
            event = await self._catch_up.locked()
            if self.current_key != held:
                # The key we held was rotated away already (by another process, or by a
                # rotation finished just now): that is the rotation asked for.
                event = event or self._holding.last_event
                if event is not None:
                    return event
            if self._holding.halted is not None:
                raise self._holding.halted
            return await self._protocol.rotate(await self._io.load_existing(), reason)

    async def _after_refusal(self) -> SecretKey | None:
        """The client's `on_unauthorized` hook: see `CatchUp.after_refusal`.

        A store that cannot be read leaves the 401 to stand: the caller learns that its
        key was refused (`AuthenticationError`), not that the store is down.
        """
        try:
            with rotation_requests():  # its probes are the rotator's own requests
                return await self._catch_up.after_refusal(self._inflight)
        except StoreError as exc:
            logger.error("could not look for a newer key in the store after a 401 (%s)", exc)
            return None

    def _rotation_done(self, task: asyncio.Task[RotationEvent]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: a rotation nobody awaited any more is not "lost"


@attrs.frozen
class _Seen:
    """The key the last check saw, for the schedule's guards.

    Its id; since when this process uses it (monotonic seconds; None for the key it
    started with); and, for a key whose `created_at` was in the future, the server time
    it was first seen at.
    """

    key_id: str
    since: float | None
    first_seen_at: dt.datetime | None = None


def _check_settings(client: object, store: object) -> None:
    """Refuse a rotator that could not work: `TypeError`/`ValueError` saying why."""
    if not isinstance(client, AccountClient):
        raise TypeError(f"KeyRotator needs an AccountClient, not {type(client).__name__}")
    if client.api_key is None:
        raise ValueError("KeyRotator needs a client holding the root API key it rotates")
    if store is not None and not isinstance(store, KeyStore):
        raise TypeError(
            f"store must be a KeyStore (load, save, lock, aclose), not {type(store).__name__}"
        )
