"""`KeyRotator`: rotate the root key on a schedule or on demand, and never lose it.

The public surface, and the wiring of the rooms that do the work:

- `_journal`: what a stored record means and what it calls for next (pure);
- `_catch_up`: carries out those steps (adopt, finish a journal, save a held key, and
  the reload after a 401);
- `_protocol`: the nine-step rotation, and completing or recovering one;
- `_recovery`: reissuing with the recovery token after a key was lost;
- `_store_io`: retried compare-and-set writes; `_announce`: callbacks and `events()`;
- `_loops`: the schedule and following the store; `_holding`: what this process holds;
- `_steps`: the named steps, and the seam crash tests hook into
  (`cs2cap_account.testing.after_step`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final

from cs2cap_account._client import AccountClient
from cs2cap_account._secret import SecretKey
from cs2cap_account.rotation._announce import Announcer
from cs2cap_account.rotation._callbacks import Callback
from cs2cap_account.rotation._catch_up import CatchUp
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.rotation._holding import Holding
from cs2cap_account.rotation._loops import follow, schedule
from cs2cap_account.rotation._protocol import Protocol
from cs2cap_account.rotation._recovery import Recovery
from cs2cap_account.rotation._schedule import as_timedelta, due_reason
from cs2cap_account.rotation._steps import StepHooks
from cs2cap_account.rotation._store_io import StoreIO
from cs2cap_account.rotation._tasks import Background, finish_even_if_cancelled
from cs2cap_account.stores._memory import MemoryKeyStore
from cs2cap_account.stores._protocol import KeyStore

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["KeyRotator"]

logger: Final = logging.getLogger("cs2cap_account.rotation")


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
        _check_settings(client, check_interval, callback_timeout, jitter)
        self._client = client
        self._clock = client.clock
        self._store: KeyStore = store if store is not None else MemoryKeyStore()
        self._max_age = as_timedelta(max_age, name="max_age")
        self._before_expiry = as_timedelta(before_expiry, name="before_expiry")
        self._check_interval = check_interval
        self._jitter = jitter
        token = SecretKey(recovery_token) if isinstance(recovery_token, str) else recovery_token
        self._io = StoreIO(self._store, self._clock)
        self._holding = Holding(client)
        self._recovery = Recovery(client, token)
        self._announcer = Announcer(self._holding, self._clock, callback_timeout)
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
        self._catch_up = CatchUp(
            client,
            self._clock,
            self._io,
            self._holding,
            self._protocol,
            self._announcer,
            self._background,
        )
        self._inflight: asyncio.Task[RotationEvent] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        client.on_unauthorized(self._after_refusal)

    def __repr__(self) -> str:
        return f"KeyRotator(store={self._store!r}, generation={self.generation})"

    def on_rotate(self, callback: Callback) -> Callback:
        """Register `callback(event)`, sync or async, to run after every new key.

        Usable as a decorator. Callbacks run concurrently, each within `callback_timeout`,
        retried with backoff on failure; a failure is logged and listed in
        `event.callback_errors` and never undoes the rotation.
        """
        self._announcer.callbacks.append(callback)
        return callback

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

    async def rotate_now(self, reason: str = "manual") -> RotationEvent:
        """Rotate away from the key this process holds, and return the event.

        Concurrent callers share one rotation. If the store already holds a newer key
        (another process rotated), that key is adopted instead of reissuing again. Needs
        no `start()`: a rotator made for one rotation can just call this.
        """
        if self._inflight is None:
            task = asyncio.ensure_future(self._rotate(reason, self.current_key))
            task.add_done_callback(self._rotation_done)
            self._inflight = task
        return await asyncio.shield(self._inflight)

    def events(self) -> AsyncGenerator[RotationEvent, None]:
        """Every `RotationEvent` from the moment iteration starts, as it is announced."""
        return self._announcer.events()

    async def run(self) -> None:
        """Run the schedule until cancelled: check at once, then every `check_interval`.

        A failing check is logged and retried with backoff; the loop never ends by itself.
        If the store can announce changes (`store.changes()`, e.g. Redis), the rotator also
        follows them, adopting another process's new key as soon as it is saved.
        Use `start()`/`stop()` or `async with rotator:`, or hand this to a TaskGroup.
        """
        checks = schedule(
            self.check, clock=self._clock, interval=self._check_interval, jitter=self._jitter
        )
        changes: Callable[[], AsyncIterator[int]] | None = getattr(self._store, "changes", None)
        if changes is None:
            await checks
            return
        following = follow(
            changes,
            held_generation=lambda: self._holding.generation,
            catch_up=self._catch_up.catch_up,
            clock=self._clock,
        )
        await asyncio.gather(checks, following)

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
        tasks = [t for t in (self._loop_task, self._inflight, *self._background.tasks) if t]
        for task in tasks:
            task.cancel()
        if tasks:
            await finish_even_if_cancelled(asyncio.gather(*tasks, return_exceptions=True))
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
        from cs2cap_account.integrations.aiohttp_app import attach

        attach(self, app)

    async def check(self) -> RotationEvent | None:
        """One scheduled check: catch up with the store, then rotate if the key is due.

        Returns the event of a rotation this check finished, adopted or made, if any.
        """
        caught_up = await self._catch_up.catch_up()
        if self._holding.halted is not None:
            logger.error("not rotating: %s", self._holding.halted)
            return caught_up
        info = await self._client.get_key()
        reason = due_reason(
            info, self._clock.now(), max_age=self._max_age, before_expiry=self._before_expiry
        )
        if reason is None:
            return caught_up
        logger.info("root key %s is due for rotation (%s)", info.id, reason)
        return await self.rotate_now(reason)

    async def _rotate(self, reason: str, held: SecretKey) -> RotationEvent:
        """Under the store's lock: catch up, then rotate unless that already moved the key."""
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
        """The client's `on_unauthorized` hook: see `CatchUp.after_refusal`."""
        return await self._catch_up.after_refusal(self._inflight)

    def _rotation_done(self, task: asyncio.Task[RotationEvent]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: a rotation nobody awaited any more is not "lost"


def _check_settings(
    client: AccountClient, check_interval: float, callback_timeout: float, jitter: float
) -> None:
    """Refuse a rotator that could not work: `ValueError` saying why."""
    if client.api_key is None:
        raise ValueError("KeyRotator needs a client holding the root API key it rotates")
    if check_interval <= 0 or callback_timeout <= 0:
        raise ValueError("check_interval and callback_timeout must be positive")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be a fraction in [0, 1)")
