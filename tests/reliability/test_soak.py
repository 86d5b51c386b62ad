"""Chaos soak: hundreds of rotations while 20 tasks make ordinary calls, against a fake
that drops, delays, garbles and refuses requests at random (seeded).

After every rotation, with chaos paused: the stored key authenticates and is the one in
use; the server's reissues equal the rotations that took effect plus the lost keys the
rotator recovered with its session token; every callback and `events()` saw each new
generation exactly once. Ordinary calls fail only with the SDK's own errors, and all
succeed again whenever chaos pauses. Every assertion names the seed, to replay a run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import pytest

from cs2cap_account import (
    AccountClient,
    CS2CapError,
    FakeClock,
    KeyRecord,
    KeyRotator,
    MemoryKeyStore,
    RotationError,
    RotationEvent,
)
from cs2cap_account.testing import ChaosSettings, FakeCS2CapAPI, _app
from cs2cap_account.testing._state import AccountState

from ._chaos import quiet_pytest_log_capture, server_idle
from ._hygiene import exception_text
from ._profile import PROFILE, STATS

CHAOS: Final = ChaosSettings(
    seed=0,  # each rotation reseeds: seed * 1_000_003 + rotation
    error=0.04,  # 500, 502 or 503
    rate_limit=0.03,  # 429 with Retry-After: 1
    drop=0.03,  # the connection is closed before the handler runs
    drop_after_commit=0.03,  # the handler ran; its response is lost
    delay=0.015,  # the handler runs after the client's timeout
    malformed=0.03,  # an HTML 502 page, or truncated JSON
    delay_seconds=0.06,  # beyond the clients' timeout
)
TIMEOUT: Final = 0.04  # the clients' per-attempt timeout, in real seconds
PACE: Final = 0.05  # real seconds each caller waits between calls
WORKERS: Final = 20
HEALTH_EVERY: Final = 25  # rotations between checks that every kind of call works again
BOUND: Final = 30.0  # real seconds any one rotation, check or wait may take
RESOLVE_ATTEMPTS: Final = 5

# Anything shaped like a key or a session token, to look up among the issued ones.
_CANDIDATE: Final = re.compile(r"sk_(?:live|test)_[\w-]{20,}|eyJ[\w-]{8,}\.[\w-]+\.[\w-]+")


class _Story(logging.Handler):
    """Keeps what the SDK logs at INFO and up in the current rotation (not its retries)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("retrying "):
            self.lines.append(f"{record.levelname} {record.name}: {message}")


@attrs.define
class Soak:
    """One soak run: the fake, the client its workers share with the rotator, counters."""

    seed: int
    api: FakeCS2CapAPI
    client: AccountClient
    rotator: KeyRotator
    store: MemoryKeyStore
    fired: dict[str, list[int]]
    calls: Counter[str] = attrs.field(factory=Counter)
    untyped: list[str] = attrs.field(factory=list)
    leaked: list[str] = attrs.field(factory=list)
    running: asyncio.Event = attrs.field(factory=asyncio.Event)
    story: list[str] = attrs.field(factory=list)  # this rotation's warnings, for failures
    stopping: bool = False
    inflight: int = 0

    def where(self, rotation: int | str) -> str:
        """What to put in an assertion message to replay this run, and what happened."""
        story = "".join(f"\n    {line}" for line in self.story[-40:])
        return f"[seed={self.seed} rotation={rotation}]{story}\n"

    def audit_error(self, exc: BaseException) -> None:
        """Note it if the error's text holds any key the fake issued (shown redacted)."""
        text = exception_text(exc)
        candidates = _CANDIDATE.findall(text)
        if not candidates:
            return
        for key in self.api.issued_secrets():
            if any(key.reveal() in candidate for candidate in candidates):
                self.leaked.append(f"{key.redacted} in {type(exc).__name__}")

    async def record(self) -> KeyRecord:
        """The store's record (it is never empty once the soak started)."""
        record = await self.store.load()
        assert record is not None, self.where("?")
        return record


def _operations(client: AccountClient) -> list[Callable[[], Awaitable[object]]]:
    fewer_retries = client.with_options(max_retries=1)
    return [
        client.get_key,
        lambda: client.sub_keys.list(limit=5),
        fewer_retries.get_key,
        lambda: fewer_retries.sub_keys.list(limit=100, offset=1),
    ]


async def _worker(soak: Soak, number: int) -> None:
    """Make ordinary calls while chaos runs; count each outcome by error type."""
    operations = _operations(soak.client)
    turn = number
    while True:
        await soak.running.wait()
        if soak.stopping:
            return
        soak.inflight += 1
        try:
            await operations[turn % len(operations)]()
            soak.calls["ok"] += 1
        except CS2CapError as exc:
            soak.calls[type(exc).__name__] += 1
            soak.audit_error(exc)
        except Exception as exc:  # the soak fails on any of these, at the next checkpoint
            soak.untyped.append(f"{type(exc).__name__}: {exc}")
        finally:
            soak.inflight -= 1
        turn += 1
        await asyncio.sleep(PACE)


async def _quiesce(soak: Soak) -> int:
    """Stop the workers and wait until no call is in flight and the server is idle."""
    soak.running.clear()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while soak.inflight:
        assert loop.time() < deadline, f"{soak.where('?')} ordinary calls never finished"
        await asyncio.sleep(0.001)
    return await server_idle(BOUND)


async def _resolve(soak: Soak, rotation: int) -> KeyRecord:
    """With chaos paused, let checks finish whatever the rotation left open."""
    for _ in range(RESOLVE_ATTEMPTS):
        record = await soak.record()
        settled = record.pending is None and soak.client.api_key == record.key
        if settled and soak.api.is_active(record.key):
            return record
        try:
            await asyncio.wait_for(soak.rotator.check(), BOUND)
        except CS2CapError as exc:
            raise AssertionError(
                f"{soak.where(rotation)} check() failed with chaos paused: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        await server_idle(BOUND)
    record = await soak.record()
    raise AssertionError(
        f"{soak.where(rotation)} not settled after {RESOLVE_ATTEMPTS} checks: generation "
        f"{record.generation}, journal open: {record.pending is not None}, stored key "
        f"active: {soak.api.is_active(record.key)}, in use: {soak.client.api_key == record.key}"
    )


async def _all_calls_work(soak: Soak, rotation: int) -> None:
    """With chaos paused, one call of every kind from every worker succeeds (given time:
    the short timeout is for chaos's delays, not for a busy machine).
    """
    operations = _operations(soak.client.with_options(timeout=10.0))
    results = await asyncio.wait_for(
        asyncio.gather(
            *(operations[n % len(operations)]() for n in range(WORKERS)), return_exceptions=True
        ),
        BOUND,
    )
    failures = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{soak.where(rotation)} calls still fail with chaos paused"


def _check_invariants(soak: Soak, record: KeyRecord, rotation: int, events: list[int]) -> None:
    where = soak.where(rotation)
    api, rotator = soak.api, soak.rotator
    assert soak.untyped == [], f"{where} calls raised errors that are not CS2CapError"
    assert soak.leaked == [], f"{where} plaintext keys in errors"
    assert api.is_active(record.key), f"{where} the stored key does not authenticate"
    assert record.key == api.root_key, f"{where} the stored key is not the active root key"
    assert rotator.current_key == record.key, f"{where} the rotator holds another key"
    expected = list(range(2, record.generation + 1))
    for name, generations in soak.fired.items():
        assert generations == expected, f"{where} callback {name} fired for {generations}"
    assert events == expected, f"{where} events() yielded {events}"
    assert api.reissues == (record.generation - 1) + rotator.recoveries, (
        f"{where} {api.reissues} reissues, but {record.generation - 1} rotations took "
        f"effect and {rotator.recoveries} lost keys were recovered"
    )


async def _soak(seed: int, rotations: int, reissue_log: list[str]) -> None:
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    fired: dict[str, list[int]] = {"sync": [], "async": []}
    async with (
        FakeCS2CapAPI(tier="quant", clock=clock.monotonic, wall_clock=clock.now) as api,
        AccountClient(
            api.root_key, base_url=api.base_url, clock=clock, timeout=TIMEOUT, max_retries=3
        ) as client,
    ):
        store = MemoryKeyStore()
        rotator = KeyRotator(client, store=store, recovery_token=api.session_token)
        rotator.on_rotate(lambda event: fired["sync"].append(event.generation))

        async def on_rotate(event: RotationEvent) -> None:
            await asyncio.sleep(0)
            fired["async"].append(event.generation)

        rotator.on_rotate(on_rotate)
        soak = Soak(seed, api, client, rotator, store, fired, story=reissue_log)
        events: list[int] = []

        async def follow() -> None:
            async for event in rotator.events():
                events.append(event.generation)

        story = _Story(soak.story)
        logging.getLogger("cs2cap_account").addHandler(story)
        await rotator.check()  # generation 1: the fake's first root key
        tasks = [asyncio.create_task(_worker(soak, n)) for n in range(WORKERS)]
        follower = asyncio.create_task(follow())
        took_effect = 0
        try:
            for rotation in range(rotations):
                before = (await soak.record()).generation
                soak.story.clear()
                api.faults.chaos(
                    seed * 1_000_003 + rotation,
                    error=CHAOS.error,
                    rate_limit=CHAOS.rate_limit,
                    drop=CHAOS.drop,
                    drop_after_commit=CHAOS.drop_after_commit,
                    delay=CHAOS.delay,
                    malformed=CHAOS.malformed,
                    delay_seconds=CHAOS.delay_seconds,
                )
                soak.running.set()
                event: RotationEvent | None = None
                try:
                    event = await asyncio.wait_for(rotator.rotate_now(f"soak {rotation}"), BOUND)
                except RotationError as exc:
                    STATS.rotation_errors[_kind_of(exc)] += 1
                    soak.audit_error(exc)
                    soak.story.append(f"rotate_now raised {_kind_of(exc)}: {exc}")
                except CS2CapError as exc:
                    STATS.rotation_errors[type(exc).__name__] += 1
                    soak.audit_error(exc)
                    soak.story.append(f"rotate_now raised {type(exc).__name__}: {exc}")
                api.faults.stop_chaos()
                STATS.late_handlers_awaited += await _quiesce(soak)
                record = await _resolve(soak, rotation)
                await asyncio.sleep(0)  # let events() catch up
                gained = record.generation - before
                assert gained in (0, 1), f"{soak.where(rotation)} generation moved by {gained}"
                if event is not None:
                    assert (gained, event.generation) == (1, record.generation), soak.where(
                        rotation
                    )
                took_effect += gained
                _check_invariants(soak, record, rotation, events)
                if rotation % HEALTH_EVERY == HEALTH_EVERY - 1 or rotation == rotations - 1:
                    await _all_calls_work(soak, rotation)
        finally:
            soak.stopping = True
            soak.running.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), BOUND)
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await rotator.stop()
            logging.getLogger("cs2cap_account").removeHandler(story)
        STATS.rotations += rotations
        STATS.rotations_effective += took_effect
        STATS.recoveries += rotator.recoveries
        STATS.reissues += api.reissues
        STATS.faults.update(api.faults.injected)
        STATS.ordinary_calls.update(soak.calls)
        where = soak.where("end")
        assert took_effect >= rotations // 2, f"{where} only {took_effect} rotations took effect"
        assert soak.calls["ok"] > 0, where
        assert sum(api.faults.injected.values()) > rotations, f"{where} too little chaos"


def _kind_of(error: RotationError) -> str:
    """A short label for a failed rotation, by its cause."""
    cause: Any = error.__cause__
    return f"RotationError({type(cause).__name__ if cause is not None else '-'})"


@pytest.fixture
def reissue_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every root reissue the fake performs, with who asked (for failure messages)."""
    log: list[str] = []
    handle = _app._HANDLERS["reissue_key"]

    def logged(state: AccountState, call: Any) -> tuple[int, dict[str, Any]]:
        before = state.root.id
        status, payload = handle(state, call)
        log.append(f"server: reissue by {call.caller.kind}: {before} -> {payload['id']}")
        return status, payload

    monkeypatch.setitem(_app._HANDLERS, "reissue_key", logged)
    return log


@pytest.mark.parametrize("seed", PROFILE.seeds)
async def test_rotations_under_chaos_never_lose_the_key(seed: int, reissue_log: list[str]) -> None:
    """Rotate `PROFILE.rotations` times under seeded chaos with 20 busy callers.

    Each rotation either takes effect or provably did nothing; the key in the store
    always works once chaos pauses; reissues are accounted for exactly; callbacks fire
    once per generation; callers only ever see `CS2CapError`s and recover.
    """
    started = time.perf_counter()
    with quiet_pytest_log_capture():
        await _soak(seed, PROFILE.rotations, reissue_log)
    STATS.load.append(
        f"chaos soak seed {seed}: {PROFILE.rotations} rotations in "
        f"{time.perf_counter() - started:.1f} s"
    )
