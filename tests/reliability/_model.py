"""A model of a fleet of three rotators sharing one store, driven by a seeded scheduler.

One `Fleet` holds the fake API, three `KeyRotator`s (each with its own `AccountClient`
and its own local clock) and a `SharedStore` that can be emptied or made to fail. A
`random.Random(seed)` picks one action per step; after every step `Fleet.violations()`
checks the invariants of never losing the key, and at the end `Fleet.settle()` stops
every fault and runs checks until the fleet is quiet, then the final invariants hold.

Actions: `rotate_now()` (sometimes cancelled), `check()`, a scheduled round (the clock
moves by `check_interval`, every process checks), a jump of one process's local clock,
a store reset, a store outage, a reset or outage armed for the k-th store operation of a
rotator (so it lands mid-rotation), a fault on the next reissue (dropped before or after
the server acted, 5xx, HTML body, truncated JSON, or complete but not as the contract
spells it), an ordinary call, a cancellation armed for a rotator's k-th event (its caller
giving up, or `stop()`), and an interleaving: one rotation paused at its k-th event while
another process acts, until that one ends or waits for the paused one's lock.

Everything runs on one event loop, one action at a time, on virtual time: the fake and the
clients share a `FakeClock`, and each process reads the wall clock through a
`SkewedClock` of its own, so its local time can jump while the server's does not.
Cancellations, pauses and mid-rotation store faults happen at the k-th event of a rotator
(an HTTP request, a store operation, a protocol step), never after some real time or
number of loop iterations (which a TCP round trip does not fix), so a seed replays the
same story, outcomes included.

Invariants after every step:

1. some store record (current or kept aside) or some process holds a key that
   authenticates, unless the key in force is one whose reissue response this harness
   destroyed (a lost response: only a recovery token can mend that);
2. no store write replaces a key that authenticates with one that does not;
3. every reissue is accounted for: each new key the fake issued is announced by some
   process, still held somewhere, or one of the keys `rotator.recoveries` counts as
   replaced (and none is counted without a key to replace).

At the end, with faults stopped and the fleet quiet:

3. exactly: unannounced keys no one holds == recoveries;
4. every process, and the store, hold one and the same working key;
5. each process's `on_rotate` callbacks fired once per key id (none twice), and for
   every key it saw durable in the store while holding it (and for the one it ends on).
   "Saw": it read the store, holding that key, with no journal open, while the key still
   worked. A process whose rotation was stopped after its save, and that did not look
   at the store again before another key replaced its own, never learnt that its key
   was durable; that key is revoked by then, and announcing it would hand the services
   fed by callbacks a dead key: it is owed the newer key instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from cs2cap_account import (
    AccountClient,
    CS2CapError,
    FakeClock,
    FileKeyStore,
    Hooks,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RequestEvent,
    RotationEvent,
    SecretKey,
    StoreError,
)
from cs2cap_account.rotation import Step
from cs2cap_account.stores import KeyStore
from cs2cap_account.testing import FakeCS2CapAPI, _app, rotation_task, running_tasks
from cs2cap_account.testing import after_step as after_step_seam
from cs2cap_account.testing._state import AccountState

__all__ = ["CHECK_INTERVAL", "MAX_AGE", "Fleet", "ModelRun", "SharedStore", "SkewedClock", "run"]

CHECK_INTERVAL: Final = 3600.0
MAX_AGE: Final = dt.timedelta(hours=6)
PROCESSES: Final = 3
STORY_LINES: Final = 30
BOUND: Final = 60.0  # real seconds any one action may take before it counts as hung
QUIET_ROUNDS: Final = 12

# What the scheduler can do, with its weight.
ACTIONS: Final = (
    ("rotate_now", 10),
    ("check", 8),
    ("scheduled_checks", 10),
    ("skew_local_clock", 3),
    ("reset_store", 3),
    ("outage", 4),
    ("store_trigger", 6),
    ("reissue_fault", 8),
    ("ordinary_call", 8),
    ("arm_cancellation", 5),
    ("interleave", 8),
)
# Faults on the next reissue that the server survives with the key delivered (or not made).
DELIVERED_FAULTS: Final = (
    "drop",
    "5xx",
    "raw_body",
    "message_null",
    "key_prefix_null",
    "created_at_epoch",
    "created_at_rfc1123",
    "envelope",
)
# Faults that destroy a committed reissue's response: the key is gone for good.
LOSING_FAULTS: Final = ("drop_after_commit", "truncated_json")
MANGLES: Final = frozenset(
    {"message_null", "key_prefix_null", "created_at_epoch", "created_at_rfc1123", "envelope"}
)

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TMP: Final = re.compile(r"/\S*/model-store-\w+/")
_URL: Final = re.compile(r"http://127\.0\.0\.1:\d+")


class SkewedClock:
    """One process's clock: the shared monotonic time and sleeps, its own wall-clock skew."""

    def __init__(self, base: FakeClock) -> None:
        self._base = base
        self.skew = dt.timedelta()

    def monotonic(self) -> float:
        """The shared virtual monotonic seconds."""
        return self._base.monotonic()

    def now(self) -> dt.datetime:
        """The shared virtual wall clock, moved by this process's skew."""
        return self._base.now() + self.skew

    async def sleep(self, seconds: float) -> None:
        """Sleep on the shared virtual clock (time moves for everyone)."""
        await self._base.sleep(seconds)


class SharedStore:
    """The one store of the fleet: memory, or a file in a temporary directory.

    `reset()` empties it (the record vanishes, as from a Redis restarted without
    persistence); while `outage` is set, every load, save and lock of every view raises
    `StoreError`. `views[i]` is what rotator i is given.
    """

    def __init__(self, kind: str, directory: Path | None) -> None:
        self.kind = kind
        self.outage = False
        self._memory = MemoryKeyStore()
        self._path = None if directory is None else directory / "key.json"
        self.views: list[StoreView] = []
        # Who holds each rotation lock: the file store's is one lock file for all; a
        # memory store's goes with the instance (a reset makes a new one, lock and all).
        self.holders: dict[int, int] = {}

    def lock_identity(self, inner: KeyStore) -> int:
        """Which lock `inner.lock()` takes."""
        return 0 if self._path is not None else id(inner)

    def backend(self) -> KeyStore:
        """A fresh handle on the underlying store (a file store per process, as in life)."""
        if self._path is not None:
            return FileKeyStore(self._path)
        return self._memory

    def reset(self) -> None:
        """Empty the store."""
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        else:
            self._memory = MemoryKeyStore()
            for view in self.views:
                view.inner = self._memory

    async def peek(self) -> KeyRecord | None:
        """The stored record, read past any outage (for the invariants)."""
        return await self.backend().load()


@attrs.define(eq=False)
class StoreView:
    """Rotator `owner`'s handle on the shared store: the `KeyStore` protocol, plus faults
    and the write-time check of invariant 2.
    """

    shared: SharedStore
    owner: int
    fleet: Fleet
    inner: KeyStore

    def __repr__(self) -> str:
        return f"StoreView(owner={self.owner}, kind={self.shared.kind})"

    async def _enter(self, op: str) -> None:
        await self.fleet.event(self.owner, f"store.{op}")
        if self.shared.outage:
            raise StoreError(f"the key store is down (simulated outage, {op})")

    async def load(self) -> KeyRecord | None:
        """The stored record, or None."""
        await self._enter("load")
        record = await self.inner.load()
        self.fleet.looked(self.owner, record)
        return record

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Compare-and-set, then note it if a working key was replaced by a dead one."""
        await self._enter("save")
        before = await self.inner.load()
        await self.inner.save(record, expected_generation=expected_generation)
        self.fleet.saved(self.owner, before, record)

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """The underlying store's rotation lock."""
        await self._enter("lock")
        inner = self.inner
        identity = self.shared.lock_identity(inner)
        holder = self.shared.holders.get(identity)
        if holder is not None and holder != self.owner:
            self.fleet.note(f"  r{self.owner} waits for r{holder}'s lock")
            self.fleet.waiting.add(asyncio.current_task())
            self.fleet.block_signal.set()
        async with inner.lock():
            self.fleet.waiting.discard(asyncio.current_task())
            self.shared.holders[identity] = self.owner
            try:
                yield
            finally:
                self.shared.holders.pop(identity, None)

    async def aclose(self) -> None:
        """Close the underlying handle."""
        await self.inner.aclose()


@attrs.define
class Reissue:
    """One reissue the fake performed: the new key's ordinal, who asked, its response's fate."""

    ordinal: int
    by: str
    fate: str  # "delivered", "lost" (the harness destroyed it) or a mangle's name


@attrs.define
class Trigger:
    """Something to do at the k-th event of a rotator."""

    countdown: int
    kind: str


@attrs.define(eq=False)
class Process:
    """One rotator with its client, clock, callbacks record and armed triggers."""

    index: int
    rotator: KeyRotator
    client: AccountClient
    clock: SkewedClock
    has_token: bool
    fired: list[str] = attrs.field(factory=list)  # key ids, in callback order
    durable: set[str] = attrs.field(factory=set)  # seen durable while held (invariant 5)
    store_trigger: Trigger | None = None
    cancel_trigger: Trigger | None = None
    park_trigger: Trigger | None = None
    gate: asyncio.Event | None = None  # set while parked: the scheduler opens it
    action: asyncio.Task[Any] | None = None


@attrs.define(eq=False)
class Fleet:
    """The fake, the store, three processes, and everything the invariants need."""

    seed: int
    clock: FakeClock
    api: FakeCS2CapAPI
    store: SharedStore
    processes: list[Process] = attrs.field(factory=list)
    reissues: list[Reissue] = attrs.field(factory=list)
    ordinals: dict[str, int] = attrs.field(factory=dict)  # key id -> K<n>
    secrets: dict[str, int] = attrs.field(factory=dict)  # plaintext -> K<n>
    story: list[str] = attrs.field(factory=list)
    faults: Counter[str] = attrs.field(factory=Counter)
    reasons: Counter[str] = attrs.field(factory=Counter)  # callbacks fired, by event reason
    pending_fates: list[str] = attrs.field(factory=list)  # mangles for the next reissues
    write_violations: list[str] = attrs.field(factory=list)
    unexpected: list[str] = attrs.field(factory=list)
    background: list[asyncio.Task[Any]] = attrs.field(factory=list)
    rotations: dict[int, asyncio.Task[RotationEvent]] = attrs.field(factory=dict)
    park_signal: asyncio.Event = attrs.field(factory=asyncio.Event)
    block_signal: asyncio.Event = attrs.field(factory=asyncio.Event)
    waiting: set[asyncio.Task[Any] | None] = attrs.field(factory=set)  # for a lock
    without: frozenset[str] = frozenset()
    step: int = 0
    outage_left: int = 0
    losing_allowed: bool = True
    _lost_seen: int = 0

    # -- naming keys for the story ------------------------------------------------------

    def name_of_id(self, key_id: str | None) -> str:
        """K<n> for a key id (K0 is the fake's first root key)."""
        if key_id is None:
            return "-"
        return f"K{self.ordinals[key_id]}" if key_id in self.ordinals else "K?"

    def name_of_key(self, key: SecretKey | None) -> str:
        """K<n> for a plaintext key."""
        if key is None:
            return "-"
        ordinal = self.secrets.get(key.reveal())
        return "K?" if ordinal is None else f"K{ordinal}"

    def scrub(self, text: str) -> str:
        """`text` with key ids shown as K<n> and temporary paths cut, for a stable story."""
        text = _UUID.sub(lambda m: self.name_of_id(m.group(0)), text)
        return _URL.sub("<fake>", _TMP.sub("<tmp>/", text))

    def note(self, line: str) -> None:
        """Add a line to the story."""
        self.story.append(f"{self.step:>6} {line}")

    # -- what the fake and the store report ----------------------------------------------

    def reissued(self, by: str, key: str, key_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Called by the reissue handler after the account changed: record it, mangle it."""
        ordinal = len(self.ordinals)
        self.ordinals[key_id] = ordinal
        self.secrets[key] = ordinal
        lost_now = sum(self.api.faults.injected[k] for k in ("drop_after_commit", "truncated_body"))
        if lost_now > self._lost_seen:
            self._lost_seen = lost_now
            fate = "lost"
        elif self.pending_fates:
            fate = self.pending_fates.pop(0)
        else:
            fate = "delivered"
        self.reissues.append(Reissue(ordinal, by, fate))
        self.note(f"  server: reissue by {by} -> K{ordinal} ({fate})")
        return _mangle(payload, fate)

    def saved(self, owner: int, before: KeyRecord | None, after: KeyRecord) -> None:
        """Invariant 2, at write time: a working key is never replaced by a dead one."""
        if before is None or before.key == after.key:
            return
        if self.api.is_active(before.key) and not self.api.is_active(after.key):
            self.write_violations.append(
                f"(2) r{owner} saved {self.name_of_key(after.key)} (generation "
                f"{after.generation}, which does not authenticate) over "
                f"{self.name_of_key(before.key)} (generation {before.generation}, which does)"
            )

    async def event(self, owner: int, what: str) -> None:
        """One event of rotator `owner`: fire its armed triggers when their count is up."""
        process = self.processes[owner]
        inflight = rotation_task(process.rotator)
        if inflight is not None:
            self.rotations[owner] = inflight
        trigger = process.store_trigger
        if trigger is not None and what.startswith("store."):
            trigger.countdown -= 1
            if trigger.countdown <= 0:
                process.store_trigger = None
                self.note(f"  r{owner} at {what}: {trigger.kind}")
                if trigger.kind == "reset":
                    self.store.reset()
                else:
                    self.store.outage = True
                    self.outage_left = 3
        self._count_cancel(owner, what)
        park = process.park_trigger
        if park is not None:
            park.countdown -= 1
            if park.countdown <= 0:
                process.park_trigger = None
                process.gate = gate = asyncio.Event()
                self.note(f"  r{owner} paused at {what}")
                self.park_signal.set()
                await gate.wait()

    def _count_cancel(self, owner: int, what: str) -> None:
        process = self.processes[owner]
        trigger = process.cancel_trigger
        if trigger is None:
            return
        trigger.countdown -= 1
        if trigger.countdown > 0:
            return
        process.cancel_trigger = None
        self.note(f"  r{owner} at {what}: {trigger.kind}")
        if trigger.kind == "stop":
            self.background.append(asyncio.ensure_future(process.rotator.stop()))
        elif process.action is not None and not process.action.done():
            process.action.cancel()

    # -- invariants -----------------------------------------------------------------------

    def _holders(self, record: KeyRecord | None) -> list[SecretKey]:
        keys = [p.client.api_key for p in self.processes if p.client.api_key is not None]
        if record is not None:
            keys += [record.key, *record.kept_aside]
        return keys

    def _orphans(self, record: KeyRecord | None) -> list[Reissue]:
        """Reissued keys no process announced, that no one holds or that no longer work:
        lost keys, each of which only a recovery accounts for.
        """
        announced = {key_id for p in self.processes for key_id in p.fired}
        announced_ordinals = {self.ordinals[k] for k in announced if k in self.ordinals}
        held = {self.secrets.get(k.reveal()) for k in self._holders(record)}
        root = self.ordinals.get(self.api.root_key_id)
        return [
            r
            for r in self.reissues
            if r.ordinal not in announced_ordinals and (r.ordinal not in held or r.ordinal != root)
        ]

    async def violations(self) -> list[str]:
        """Invariants 1-3 after a step (and the SDK raising only its own errors)."""
        found = list(self.write_violations) + list(self.unexpected)
        self.write_violations.clear()
        self.unexpected.clear()
        record = await self.store.peek()
        holders = self._holders(record)
        if not any(self.api.is_active(k) for k in holders):
            root = self.api.root_key_id
            genuinely_lost = any(
                r.ordinal == self.ordinals.get(root) and r.fate == "lost" for r in self.reissues
            )
            if not genuinely_lost:
                found.append(
                    f"(1) no store record and no process holds a working key: the key in force "
                    f"is {self.name_of_id(root)}; held: {self.holdings(record)}"
                )
        recoveries = sum(p.rotator.recoveries for p in self.processes)
        orphans = self._orphans(record)
        unexplained = [o for o in orphans if o.fate != "lost"]
        if len(unexplained) > recoveries:
            found.append(
                f"(3) reissued keys {self._names(orphans)} were never announced and are gone "
                f"or revoked, but only {recoveries} recoveries account for lost keys "
                f"({self._names(unexplained)} had their response delivered)"
            )
        if recoveries > len(orphans):
            found.append(
                f"(3) {recoveries} recoveries counted, but only {len(orphans)} reissued keys "
                f"were lost (never announced, and gone or revoked): {self._names(orphans)}"
            )
        if self.api.reissues != len(self.reissues):
            found.append(
                f"harness: the fake made {self.api.reissues} reissues, saw {len(self.reissues)}"
            )
        return found

    async def final_violations(self) -> list[str]:
        """Invariants 3 (exactly), 4 and 5, once the fleet is quiet."""
        found = await self.violations()
        record = await self.store.peek()
        keys = {self.name_of_key(p.client.api_key) for p in self.processes}
        stored = self.name_of_key(record.key) if record is not None else "-"
        working = record is not None and self.api.is_active(record.key)
        if len(keys) != 1 or keys != {stored} or not working:
            found.append(
                f"(4) the fleet did not end on one working key: {self.holdings(record)}, "
                f"the key in force is {self.name_of_id(self.api.root_key_id)}"
            )
        recoveries = sum(p.rotator.recoveries for p in self.processes)
        orphans = self._orphans(record)
        if len(orphans) != recoveries:
            found.append(
                f"(3) at the end, {len(orphans)} reissued keys were never announced nor kept "
                f"({self._names(orphans)}), but {recoveries} recoveries account for them"
            )
        for p in self.processes:
            counts = Counter(p.fired)
            twice = sorted(self.name_of_id(k) for k, n in counts.items() if n > 1)
            if twice:
                found.append(f"(5) r{p.index}'s callbacks fired twice for {twice}")
            final = p.client.api_key
            final_id = next(
                (
                    k
                    for k, v in self.ordinals.items()
                    if final is not None and v == self.secrets.get(final.reveal())
                ),
                None,
            )
            owed = set(p.durable)
            if final_id is not None and self.ordinals[final_id] != 0:
                owed.add(final_id)
            skipped = sorted(self.name_of_id(k) for k in owed if k not in counts)
            if skipped:
                found.append(
                    f"(5) r{p.index}'s callbacks never fired for {skipped}, keys it held "
                    f"(fired for: {[self.name_of_id(k) for k in p.fired]})"
                )
        return found

    def looked(self, owner: int, record: KeyRecord | None) -> None:
        """Process `owner` read `record`: note its key as seen durable, if it is (5)."""
        p = self.processes[owner]
        key = p.client.api_key
        if record is None or key is None or record.pending is not None or record.key != key:
            return
        ordinal = self.secrets.get(key.reveal())
        key_id = next((k for k, v in self.ordinals.items() if v == ordinal), None)
        if key_id is not None and ordinal != 0 and self.api.is_active(key):
            p.durable.add(key_id)

    def holdings(self, record: KeyRecord | None) -> str:
        """Who holds which key, for a failure message."""
        parts = [f"r{p.index}={self.name_of_key(p.client.api_key)}" for p in self.processes]
        if record is None:
            parts.append("store=empty")
        else:
            journal = "" if record.pending is None else ", journal open"
            aside = [self.name_of_key(k) for k in record.kept_aside]
            parts.append(
                f"store={self.name_of_key(record.key)} (gen {record.generation}{journal}"
                f"{', aside ' + str(aside) if aside else ''})"
            )
        active = sorted(
            self.name_of_key(k) for k in set(self._holders(record)) if self.api.is_active(k)
        )
        parts.append(f"working: {active or 'none'}")
        return ", ".join(parts)

    def _names(self, reissues: list[Reissue]) -> list[str]:
        return [f"K{r.ordinal}" for r in reissues]

    # -- running actions ------------------------------------------------------------------

    async def perform(self, owner: int | None, label: str, aw: Awaitable[Any]) -> str:
        """Run one action to its end (or its cancellation), and say how it ended."""
        task = self.start(owner, aw)
        outcome = await self.finish(owner, label, task)
        await self.drain()
        return outcome

    def start(self, owner: int | None, aw: Awaitable[Any]) -> asyncio.Task[Any]:
        """Start an action of process `owner` (its cancellation trigger may cancel it)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(aw)
        if owner is not None:
            self.processes[owner].action = task
        return task

    async def until(self, task: asyncio.Task[Any], signal: asyncio.Event) -> None:
        """Wait until `task` ends or `signal` is set (a pause, a wait for a lock)."""
        waiter = asyncio.ensure_future(signal.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=BOUND, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        signal.clear()

    async def until_blocked(self, owner: int, task: asyncio.Task[Any]) -> None:
        """Wait until `task` and what it left running in process `owner` (a rotation, a
        catch-up after a 401) have each ended or wait for another process's lock.
        """
        rotator = self.processes[owner].rotator
        while True:
            inflight = rotation_task(rotator)
            running = [t for t in (task, *running_tasks(rotator)) if not t.done()]
            # The action waits for the rotation it started, or is itself waiting.
            stuck = self.waiting | ({task} if inflight in self.waiting else set())
            if all(t in stuck for t in running):
                break
            self.block_signal.clear()
            waiter = asyncio.ensure_future(self.block_signal.wait())
            try:
                done, _ = await asyncio.wait(
                    {*running, waiter}, timeout=BOUND, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            if not done:
                break
        self.block_signal.clear()

    async def finish(self, owner: int | None, label: str, task: asyncio.Task[Any]) -> str:
        """Wait for an action started with `start()`, and say how it ended."""
        try:
            result = await asyncio.wait_for(asyncio.shield(task), BOUND)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
            outcome = "cancelled"
        except asyncio.TimeoutError:
            task.cancel()
            self.unexpected.append(f"{label} still ran after {BOUND} s")
            outcome = "hung"
        except CS2CapError as exc:
            cause = exc.__cause__
            why = "" if cause is None else f" <- {type(cause).__name__}"
            outcome = f"{type(exc).__name__}{why}: {self.scrub(str(exc))[:160]}"
        except Exception as exc:  # the SDK raised something that is not its own error
            self.unexpected.append(f"{label} raised {type(exc).__name__}: {exc}")
            outcome = f"UNEXPECTED {type(exc).__name__}: {exc}"
        else:
            outcome = "ok" if result is None else _describe(self, result)
        finally:
            if owner is not None and self.processes[owner].action is task:
                self.processes[owner].action = None
        return outcome

    async def drain(self) -> None:
        """Wait for what actions left running: stops, rotations, background catch-ups."""
        for _ in range(20):
            tasks = list(self.background)
            for p in self.processes:
                # The rotator's own tasks: a shielded rotation, a catch-up after a 401.
                tasks += running_tasks(p.rotator)
            tasks = [t for t in tasks if not t.done()]
            if not tasks:
                break
            _done, still = await asyncio.wait(tasks, timeout=BOUND)
            if still:
                self.unexpected.append(f"{len(still)} tasks still ran after {BOUND} s")
                for t in still:
                    t.cancel()
        for owner, rotation in sorted(self.rotations.items()):
            del self.rotations[owner]
            if rotation.cancelled():
                self.note(f"  r{owner}'s rotation: cancelled")
            elif rotation.done() and rotation.exception() is not None:
                exc = rotation.exception()
                self.note(
                    f"  r{owner}'s rotation: {type(exc).__name__}: {self.scrub(str(exc))[:120]}"
                )
            elif rotation.done():
                self.note(f"  r{owner}'s rotation: {_describe(self, rotation.result())}")
        for t in self.background:
            if t.done() and not t.cancelled() and t.exception() is not None:
                self.note(f"  background ended with {type(t.exception()).__name__}")
        self.background = [t for t in self.background if not t.done()]

    # -- the end --------------------------------------------------------------------------

    async def settle(self) -> None:
        """Stop every fault, then let the three run checks until a round changes nothing."""
        self.note("faults stop; checks until quiet")
        self.api.faults.clear()
        self.pending_fates.clear()
        self.store.outage = False
        for p in self.processes:
            p.store_trigger = p.cancel_trigger = None
            p.clock.skew = dt.timedelta()
        for round_ in range(QUIET_ROUNDS):
            before = await self._snapshot()
            for p in self.processes:
                outcome = await self.perform(p.index, "check", p.rotator.check())
                self.note(f"quiet round {round_}: r{p.index}.check() -> {outcome}")
            if await self._snapshot() == before:
                return

    async def _snapshot(self) -> tuple[object, ...]:
        record = await self.store.peek()
        return (
            self.api.reissues,
            None if record is None else (record.key.reveal(), record.generation, record.pending),
            tuple(p.client.api_key for p in self.processes),
            tuple(len(p.fired) for p in self.processes),
        )


def _describe(fleet: Fleet, result: object) -> str:
    if isinstance(result, RotationEvent):
        return (
            f"event {fleet.name_of_id(result.previous_key_id)} -> {fleet.name_of_id(result.key_id)}"
            f" gen {result.generation} ({result.reason})"
        )
    return type(result).__name__


def _mangle(payload: dict[str, Any], fate: str) -> dict[str, Any]:
    """The once-shown response, complete but not as the contract spells it."""
    out = dict(payload)
    created = dt.datetime.fromisoformat(str(payload["created_at"]).replace("Z", "+00:00"))
    if fate == "message_null":
        out["message"] = None
    elif fate == "key_prefix_null":
        out["key_prefix"] = None
    elif fate == "created_at_epoch":
        out["created_at"] = int(created.timestamp())
    elif fate == "created_at_rfc1123":
        out["created_at"] = email.utils.format_datetime(created, usegmt=True)
    elif fate == "envelope":
        return {"data": out}
    return out


@contextmanager
def _watching_reissues(fleet_box: list[Fleet]) -> Iterator[None]:
    """Route the fake's reissue handler through the fleet of this run."""
    handle = _app._HANDLERS["reissue_key"]

    def watched(state: AccountState, call: Any) -> tuple[int, dict[str, Any]]:
        status, payload = handle(state, call)
        if status == 200 and fleet_box:
            payload = fleet_box[0].reissued(
                call.caller.kind, str(payload["key"]), str(payload["id"]), payload
            )
        return status, payload

    _app._HANDLERS["reissue_key"] = watched
    try:
        yield
    finally:
        _app._HANDLERS["reissue_key"] = handle


# -- the scheduler ----------------------------------------------------------------------------


@attrs.frozen
class ModelRun:
    """What one seeded run did: its story, the step it stopped at, what broke."""

    seed: int
    steps: int
    story: tuple[str, ...]
    violations: tuple[str, ...]
    faults: Counter[str]
    reissues: int
    recoveries: int
    mangled_salvaged: int
    mangled: int
    reasons: Counter[str]

    def last_actions(self, count: int = STORY_LINES) -> list[str]:
        """The story's lines of the last `count` steps (each line starts with its step)."""
        first = self.steps - count
        return [line for line in self.story if int(line.split(maxsplit=1)[0]) > first]

    def report(self) -> str:
        """The failure message: the seed to replay, the step, the last actions."""
        story = "\n".join(f"    {line}" for line in self.last_actions())
        broken = "\n".join(f"  {v}" for v in self.violations)
        return (
            f"invariant broken at step {self.steps} (replay: CS2CAP_MODEL_SEED={self.seed}):\n"
            f"{broken}\n  the last actions:\n{story}"
        )


def _pick(rng: random.Random) -> str:
    names = [name for name, _ in ACTIONS]
    weights = [weight for _, weight in ACTIONS]
    return rng.choices(names, weights)[0]


async def _step(fleet: Fleet, rng: random.Random) -> None:
    """Draw one action and its parameters (all from `rng`, before anything runs), do it."""
    if fleet.store.outage and fleet.outage_left > 0:
        fleet.outage_left -= 1
        if fleet.outage_left == 0:
            fleet.store.outage = False
            fleet.note("store outage ends")
    action = _pick(rng)
    i = rng.randrange(PROCESSES)
    if action in fleet.without:
        fleet.note(f"(no {action})")
        return
    await _DOERS[action](fleet, rng, fleet.processes[i])


async def _rotate_now(fleet: Fleet, rng: random.Random, p: Process) -> None:
    cancel = rng.random() < 0.25
    k, kind = rng.randint(1, 14), rng.choice(("abandon", "stop"))
    if cancel:
        p.cancel_trigger = Trigger(k, kind)
        fleet.faults[f"cancel_{kind}"] += 1
    label = f"r{p.index}.rotate_now()" + (f" [{kind} at event {k}]" if cancel else "")
    fleet.note(f"{label} -> {await fleet.perform(p.index, label, p.rotator.rotate_now())}")


async def _check(fleet: Fleet, rng: random.Random, p: Process) -> None:
    outcome = await fleet.perform(p.index, "check", p.rotator.check())
    fleet.note(f"r{p.index}.check() -> {outcome}")


async def _scheduled_checks(fleet: Fleet, rng: random.Random, p: Process) -> None:
    fleet.clock.advance(CHECK_INTERVAL)
    fleet.note(f"clock +{CHECK_INTERVAL:g} s; every process checks")
    for q in fleet.processes:
        outcome = await fleet.perform(q.index, "check", q.rotator.check())
        fleet.note(f"  r{q.index}.check() -> {outcome}")


async def _skew_local_clock(fleet: Fleet, rng: random.Random, p: Process) -> None:
    jump = rng.choice((1, -1)) * rng.choice(
        (MAX_AGE + dt.timedelta(hours=1), dt.timedelta(days=31), dt.timedelta(days=2))
    )
    back = rng.random() < 0.3
    p.clock.skew = dt.timedelta() if back else p.clock.skew + jump
    fleet.faults["clock_skew"] += 0 if back else 1
    fleet.note(f"r{p.index}'s local clock skew -> {p.clock.skew}")


async def _reset_store(fleet: Fleet, rng: random.Random, p: Process) -> None:
    fleet.store.reset()
    fleet.faults["store_reset"] += 1
    fleet.note("store reset (emptied)")


async def _outage(fleet: Fleet, rng: random.Random, p: Process) -> None:
    length = rng.randint(1, 6)
    if fleet.store.outage:
        fleet.store.outage, fleet.outage_left = False, 0
        fleet.note("store outage ends")
    else:
        fleet.store.outage, fleet.outage_left = True, length
        fleet.faults["store_outage"] += 1
        fleet.note(f"store outage starts (for {length} steps)")


async def _store_trigger(fleet: Fleet, rng: random.Random, p: Process) -> None:
    k, kind = rng.randint(1, 10), rng.choice(("reset", "outage"))
    p.store_trigger = Trigger(k, kind)
    fleet.faults[f"store_{kind}_mid_operation"] += 1
    fleet.note(f"armed: store {kind} at r{p.index}'s store operation {k}")


async def _reissue_fault(fleet: Fleet, rng: random.Random, p: Process) -> None:
    choices = DELIVERED_FAULTS + (LOSING_FAULTS if fleet.losing_allowed else ())
    fault = rng.choice(choices)
    if fault in fleet.without:
        fleet.note(f"(no {fault})")
        return
    _arm_reissue_fault(fleet, fault)
    fleet.faults[fault] += 1
    fleet.note(f"armed: {fault} on the next reissue")


async def _ordinary_call(fleet: Fleet, rng: random.Random, p: Process) -> None:
    listing = rng.random() < 0.3
    call = p.client.sub_keys.list(limit=5) if listing else p.client.get_key()
    label = f"r{p.index}.{'sub_keys.list' if listing else 'get_key'}()"
    fleet.note(f"{label} -> {await fleet.perform(p.index, label, call)}")


async def _interleave(fleet: Fleet, rng: random.Random, p: Process) -> None:
    """Pause r_p's rotation at its k-th event, run another process's action meanwhile
    (until it ends, or waits for r_p's lock), then let r_p go on.
    """
    q = rng.choice([other for other in fleet.processes if other is not p])
    k = rng.randint(1, 12)
    second = rng.choice(("check", "rotate_now", "get_key"))
    fleet.faults["interleaving"] += 1
    fleet.note(f"r{p.index}.rotate_now() paused at its event {k}; r{q.index}.{second}() meanwhile")
    p.park_trigger = Trigger(k, "park")
    fleet.park_signal.clear()
    first = fleet.start(p.index, p.rotator.rotate_now())
    await fleet.until(first, fleet.park_signal)
    p.park_trigger = None
    gate, p.gate = p.gate, None
    if gate is not None:
        if second == "check":
            aw: Awaitable[object] = q.rotator.check()
        elif second == "rotate_now":
            aw = q.rotator.rotate_now()
        else:
            aw = q.client.get_key()
        fleet.block_signal.clear()
        then = fleet.start(q.index, aw)
        await fleet.until_blocked(q.index, then)
        fleet.note(f"  r{p.index} goes on")
        gate.set()
        first_outcome = await fleet.finish(p.index, "rotate_now", first)
        then_outcome = await fleet.finish(q.index, second, then)
        await fleet.drain()
        fleet.note(f"  r{q.index}.{second}() -> {then_outcome}")
    else:
        first_outcome = await fleet.finish(p.index, "rotate_now", first)
        await fleet.drain()
    fleet.note(f"  r{p.index}.rotate_now() -> {first_outcome}")


async def _arm_cancellation(fleet: Fleet, rng: random.Random, p: Process) -> None:
    k, kind = rng.randint(1, 20), rng.choice(("abandon", "stop"))
    p.cancel_trigger = Trigger(k, kind)
    fleet.faults[f"cancel_{kind}"] += 1
    fleet.note(f"armed: {kind} r{p.index} at its event {k}")


_DOERS: Final[dict[str, Callable[[Fleet, random.Random, Process], Awaitable[None]]]] = {
    "rotate_now": _rotate_now,
    "check": _check,
    "scheduled_checks": _scheduled_checks,
    "skew_local_clock": _skew_local_clock,
    "reset_store": _reset_store,
    "outage": _outage,
    "store_trigger": _store_trigger,
    "reissue_fault": _reissue_fault,
    "ordinary_call": _ordinary_call,
    "arm_cancellation": _arm_cancellation,
    "interleave": _interleave,
}


def _expand(without: frozenset[str]) -> frozenset[str]:
    return without | (MANGLES if "mangles" in without else frozenset())


def _arm_reissue_fault(fleet: Fleet, fault: str) -> None:
    faults = fleet.api.faults
    if fault == "drop":
        faults.drop("reissue_key")
    elif fault == "drop_after_commit":
        faults.drop_after_commit("reissue_key")
    elif fault == "5xx":
        faults.fail("reissue_key", status=503)
    elif fault == "raw_body":
        faults.html_502("reissue_key")
    elif fault == "truncated_json":
        faults.truncated_json("reissue_key")
    else:
        fleet.pending_fates.append(fault)


async def run(
    seed: int, steps: int, *, store_kind: str = "memory", without: frozenset[str] = frozenset()
) -> ModelRun:
    """Run `steps` seeded steps (stopping at the first broken invariant), then settle.

    `without` names actions or reissue faults never to use (e.g. `{"envelope",
    "reset_store"}`), to look past one failure for the next; "mangles" stands for every
    mangled-but-complete response.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    directory = Path(tempfile.mkdtemp(prefix="model-store-")) if store_kind == "file" else None
    clock = FakeClock(wall_start=dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc))
    box: list[Fleet] = []
    try:
        with _watching_reissues(box):
            async with FakeCS2CapAPI(
                tier="quant", rate_limits=False, clock=clock.monotonic, wall_clock=clock.now
            ) as api:
                store = SharedStore(store_kind, directory)
                fleet = Fleet(seed, clock, api, store, without=_expand(without))
                box.append(fleet)
                fleet.ordinals[api.root_key_id] = 0
                fleet.secrets[api.root_key.reveal()] = 0
                tokens = [rng.random() < 0.5 for _ in range(PROCESSES)]
                fleet.losing_allowed = any(tokens)
                try:
                    await _start(fleet, tokens)
                    return await _drive(fleet, rng, steps)
                finally:
                    for p in fleet.processes:
                        await p.rotator.stop()
                        await p.client.aclose()
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


async def _start(fleet: Fleet, tokens: list[bool]) -> None:
    api = fleet.api
    for i in range(PROCESSES):
        local = SkewedClock(fleet.clock)

        def on_request(event: RequestEvent, owner: int = i) -> None:
            fleet._count_cancel(owner, f"{event.method} {event.path}")

        client = AccountClient(
            api.root_key,
            base_url=api.base_url,
            clock=local,
            max_retries=2,
            hooks=Hooks(on_request=[on_request]),
        )
        view = StoreView(fleet.store, i, fleet, fleet.store.backend())
        fleet.store.views.append(view)
        rotator = KeyRotator(
            client,
            store=view,
            max_age=MAX_AGE,
            check_interval=CHECK_INTERVAL,
            recovery_token=api.session_token if tokens[i] else None,
        )
        process = Process(i, rotator, client, local, tokens[i])

        def fired(event: RotationEvent, process: Process = process) -> None:
            process.fired.append(event.key_id)
            fleet.reasons[event.reason.split()[0]] += 1
            fleet.note(f"  r{process.index} on_rotate({fleet.name_of_id(event.key_id)})")

        rotator.on_rotate(fired)

        async def after_step(step: Step, owner: int = i) -> None:
            fleet.note(f"  r{owner} {step}")
            await fleet.event(owner, f"step {step}")

        after_step_seam(rotator, after_step)
        fleet.processes.append(process)
    fleet.note(f"tokens: {[f'r{i}' for i, t in enumerate(tokens) if t] or 'none'}")


async def _drive(fleet: Fleet, rng: random.Random, steps: int) -> ModelRun:
    broken: list[str] = []
    for p in fleet.processes:
        fleet.note(
            f"r{p.index}.check() -> {await fleet.perform(p.index, 'check', p.rotator.check())}"
        )
    while fleet.step < steps and not broken:
        fleet.step += 1
        await _step(fleet, rng)
        broken = await fleet.violations()
    if not broken:
        await fleet.settle()
        broken = await fleet.final_violations()
    if broken:
        fleet.note("state: " + fleet.holdings(await fleet.store.peek()))
    mangled = [r for r in fleet.reissues if r.fate in MANGLES]
    announced = {k for p in fleet.processes for k in p.fired}
    salvaged = [r for r in mangled if any(fleet.ordinals.get(k) == r.ordinal for k in announced)]
    return ModelRun(
        seed=fleet.seed,
        steps=fleet.step,
        story=tuple(fleet.story),
        violations=tuple(broken),
        faults=fleet.faults,
        reissues=fleet.api.reissues,
        recoveries=sum(p.rotator.recoveries for p in fleet.processes),
        mangled_salvaged=len(salvaged),
        mangled=len(mangled),
        reasons=fleet.reasons,
    )
