"""`RedisKeyStore` against a real `redis-server`: compare-and-set, the lease, `changes()`."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from cs2cap_account import FakeClock, KeyStore, RedisKeyStore, StaleGenerationError, StoreError
from cs2cap_account.stores._record import dump_record
from cs2cap_account.stores._redis_move import MOVED, MOVING

from ._records import ROOT_2, ROOT_3, eventually, full_record, leaked, record
from .conftest import RedisServer, start_redis_server, stop_redis_server

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.lock import Lock

Opener = Callable[..., RedisKeyStore]

# How late, at most, a busy machine may run a timer: timing bounds add this much.
SCHEDULING_SLACK = 0.25


@pytest.fixture
async def open_store(redis_server: RedisServer, store_name: str) -> AsyncIterator[Opener]:
    """Open handles on one store name, each with its own connection pool; all closed after."""
    handles: list[RedisKeyStore] = []

    def open_(*, lease_ttl: float = 30.0, poll_interval: float = 5.0) -> RedisKeyStore:
        store = RedisKeyStore(
            redis_server.url, name=store_name, lease_ttl=lease_ttl, poll_interval=poll_interval
        )
        handles.append(store)
        return store

    yield open_
    for store in handles:
        await store.aclose()


class FrozenLeaseStore(RedisKeyStore):
    """A store whose lease is never renewed, as if its process stalled while holding it."""

    async def _keep_lease(self, lease: Lock) -> None:
        await asyncio.Event().wait()


# -- compare-and-set ---------------------------------------------------------------------------


async def test_is_a_key_store(open_store: Opener) -> None:
    """`RedisKeyStore` satisfies the `KeyStore` protocol, and its repr names no URL."""
    store = open_store()
    assert isinstance(store, KeyStore)
    assert "127.0.0.1" not in repr(store)
    assert repr(store).startswith("RedisKeyStore(name=")


async def test_an_empty_store_loads_none_at_generation_zero(open_store: Opener) -> None:
    """Nothing saved under the name yet: `load()` is None and `generation()` is 0."""
    store = open_store()
    assert await store.load() is None
    assert await store.generation() == 0


async def test_saves_chain_on_the_generation_and_read_back_whole(open_store: Opener) -> None:
    """The first save expects None; each next one the stored generation (a rewrite of the
    same generation included), and another handle reads every field back.
    """
    writer, reader = open_store(), open_store()
    await writer.save(record(1), expected_generation=None)
    await writer.save(full_record(), expected_generation=1)
    rewritten = attrs.evolve(full_record(), pending=None)
    await writer.save(rewritten, expected_generation=7)
    assert await reader.load() == rewritten
    assert await reader.generation() == 7


async def test_a_stale_save_is_refused_and_changes_nothing(open_store: Opener) -> None:
    """A save from an older generation, or into a non-empty store expecting None, raises
    `StaleGenerationError` with both generations; the stored record is untouched and the
    message holds no key.
    """
    store = open_store()
    await store.save(record(1), expected_generation=None)
    await store.save(record(2, ROOT_2), expected_generation=1)

    with pytest.raises(StaleGenerationError) as stale:
        await store.save(record(2, ROOT_3), expected_generation=1)
    with pytest.raises(StaleGenerationError) as not_empty:
        await store.save(record(1, ROOT_3), expected_generation=None)

    assert (stale.value.expected_generation, stale.value.stored_generation) == (1, 2)
    assert (not_empty.value.expected_generation, not_empty.value.stored_generation) == (-1, 2)
    assert await store.load() == record(2, ROOT_2)
    assert leaked(str(stale.value) + str(not_empty.value)) == []


async def test_concurrent_saves_from_one_generation_have_one_winner(open_store: Opener) -> None:
    """Eight handles (eight connections) save generation 2 over generation 1 at once:
    exactly one succeeds, the rest are fenced off, and the winner's record is stored.
    """
    await open_store().save(record(1), expected_generation=None)
    candidates = [attrs.evolve(record(2, ROOT_2), key_id=f"w{i}") for i in range(8)]
    handles = [open_store() for _ in candidates]

    results = await asyncio.gather(
        *(h.save(c, expected_generation=1) for h, c in zip(handles, candidates, strict=True)),
        return_exceptions=True,
    )

    winners = [c for c, r in zip(candidates, results, strict=True) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, StaleGenerationError) for r in results if r is not None)
    assert await open_store().load() == winners[0]


async def test_names_keep_stores_apart(redis_server: RedisServer, store_name: str) -> None:
    """Two names on one Redis database are two stores."""
    one = RedisKeyStore(redis_server.url, name=store_name + "-a")
    two = RedisKeyStore(redis_server.url, name=store_name + "-b")
    try:
        await one.save(record(3), expected_generation=None)
        assert await two.load() is None
        await two.save(record(1, ROOT_2), expected_generation=None)
        assert await one.load() == record(3)
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_hash_holds_the_generation_beside_the_record(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """`{name}:record` is a hash of `generation`, `lineage` and the JSON `record`, nothing
    else (the lineage beside the record, for the compare-and-set to see it).
    """
    await open_store().save(
        attrs.evolve(full_record(), lineage="5eed1e55"), expected_generation=None
    )
    stored = await redis_client.hgetall(f"{{{store_name}}}:record")
    assert set(stored) == {b"generation", b"lineage", b"record"}
    assert stored[b"lineage"] == b"5eed1e55"
    assert json.loads(stored[b"record"])["lineage"] == "5eed1e55"
    assert stored[b"generation"] == b"7"
    assert json.loads(stored[b"record"])["generation"] == 7


# The save script of the versions before the hash tag, over `<name>:record`, as they run it.
_OLD_SAVE = """
local stored = redis.call('HGET', KEYS[1], 'generation')
if not stored then stored = '' end
if stored ~= ARGV[1] then return {0, stored} end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'record', ARGV[3])
return {1, ARGV[2]}
"""


async def test_a_record_stored_before_the_hash_tag_is_moved_once(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """A store written under `<name>:record` (versions before the hash tag) is moved on
    first load: the record reads back as it was, now under `{name}:record`. The old hash
    keeps only a marker generation, an integer above any real one: an older version's
    compare-and-set over it is fenced off with a generation it can parse (so it holds
    its new key rather than dropping it), and a store emptied later never brings the old
    key back.
    """
    old = f"{store_name}:record"
    stored = record(4)
    await redis_client.hset(old, mapping={"generation": "4", "record": bytes(dump_record(stored))})

    assert await open_store().load() == stored
    assert await redis_client.hgetall(old) == {b"generation": MOVED.encode()}
    assert await open_store().load() == stored  # from the new hash; nothing moved again
    older_version_save = await redis_client.eval(
        _OLD_SAVE, 1, old, "4", "5", bytes(dump_record(record(5)))
    )
    assert older_version_save[0] == 0
    assert int(older_version_save[1]) > 10**18  # what the older version reads, fenced

    await redis_client.delete(f"{{{store_name}}}:record")  # the store emptied later
    assert await open_store().load() is None


async def test_a_move_waits_while_an_older_version_holds_its_lease(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """While an older version holds `<name>:lease` (its rotation may be between its
    reissue and its save), the record is not moved: the load raises `StoreError`, the old
    hash is left as it was; once the lease is released, the next load moves it.
    """
    old = f"{store_name}:record"
    fields: dict[Any, Any] = {
        b"generation": b"4",
        b"record": bytes(dump_record(record(4))),
    }
    await redis_client.hset(old, mapping=fields)
    await redis_client.set(f"{store_name}:lease", "an older version's token", px=30_000)

    with pytest.raises(StoreError, match="older version"):
        await open_store().load()
    assert await redis_client.hgetall(old) == fields

    await redis_client.delete(f"{store_name}:lease")
    assert await open_store().load() == record(4)


async def test_an_interrupted_move_is_finished_never_replayed(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """A move interrupted after marking the old hash and before dropping it: with the new
    hash still empty, the next load copies the marked record; with the new hash written
    (the copy was made, and the store rotated on since), the first load drops the old
    record, so a store emptied later comes back empty, not with the old, revoked key.
    """
    old = f"{store_name}:record"
    marked: dict[Any, Any] = {
        "generation": MOVING,
        "moved_from": "4",
        "record": bytes(dump_record(record(4))),
    }
    await redis_client.hset(old, mapping=marked)
    assert await open_store().load() == record(4)  # copied, then dropped
    assert await redis_client.hgetall(old) == {b"generation": MOVED.encode()}

    await redis_client.hset(old, mapping=marked)  # interrupted again, after the copy
    store = open_store()
    await store.save(record(6), expected_generation=4)
    assert await open_store().load() == record(6)
    assert await redis_client.hgetall(old) == {b"generation": MOVED.encode()}
    await redis_client.delete(f"{{{store_name}}}:record")
    assert await open_store().load() is None


async def test_a_partial_or_inconsistent_record_is_a_store_error(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """A hash missing a field, or whose generation disagrees with its record, is refused."""
    store = open_store()
    await store.save(record(1), expected_generation=None)
    await redis_client.hset(f"{{{store_name}}}:record", "generation", "5")
    with pytest.raises(StoreError, match="inconsistent"):
        await store.load()
    await redis_client.hdel(f"{{{store_name}}}:record", "record")
    with pytest.raises(StoreError, match="partial"):
        await store.load()


@pytest.mark.parametrize(
    "content", [b"not json", b'{"generation": 1}', b"[" * 100_000], ids=["text", "partial", "deep"]
)
async def test_a_corrupt_record_names_the_store_and_its_hash(
    open_store: Opener, redis_client: Redis, store_name: str, content: bytes
) -> None:
    """A record field that does not parse is a `StoreError` saying which hash of which
    store is corrupt, not a malformed response.
    """
    await redis_client.hset(
        f"{{{store_name}}}:record", mapping={"generation": "1", "record": content}
    )
    with pytest.raises(StoreError) as caught:
        await open_store().load()
    assert str(caught.value).startswith(
        f"the record hash '{{{store_name}}}:record' of the Redis store '{store_name}' is corrupt: "
    )
    assert "response" not in str(caught.value)


async def test_a_client_passed_in_is_left_open(redis_client: Redis, store_name: str) -> None:
    """A store made from your `Redis` client uses it and does not close it."""
    store = RedisKeyStore(redis_client, name=store_name)
    await store.save(record(1), expected_generation=None)
    await store.aclose()
    assert await redis_client.ping()
    assert await RedisKeyStore(redis_client, name=store_name).load() == record(1)


async def test_an_unreachable_server_is_a_store_error(store_name: str) -> None:
    """Connection failures surface as `StoreError` (chained), never as redis exceptions,
    and the message does not repeat the URL's password.
    """
    from redis.exceptions import RedisError

    store = RedisKeyStore(f"redis://:hunter2pw@127.0.0.1:{_closed_port()}/0", name=store_name)
    try:
        with pytest.raises(StoreError) as caught:
            await store.load()
        with pytest.raises(StoreError):
            await store.save(record(1), expected_generation=None)
        with pytest.raises(StoreError):
            async with store.lock():
                pass
    finally:
        await store.aclose()
    assert isinstance(caught.value.__cause__, RedisError)
    assert "hunter2pw" not in str(caught.value)


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_bad_settings_are_refused(redis_server: RedisServer) -> None:
    """An empty name or a non-positive lease or poll interval raises `ValueError`."""
    with pytest.raises(ValueError, match="name"):
        RedisKeyStore(redis_server.url, name="")
    with pytest.raises(ValueError, match="positive"):
        RedisKeyStore(redis_server.url, lease_ttl=0.0)
    with pytest.raises(ValueError, match="positive"):
        RedisKeyStore(redis_server.url, poll_interval=-1.0)


# -- the lease ---------------------------------------------------------------------------------


async def test_the_lease_is_exclusive_across_handles(open_store: Opener) -> None:
    """Six handles (as six processes would) take the lease three times each: never two
    holders at once, and every turn is served.
    """
    inside = 0
    most = 0
    turns = 0

    async def take_turns(store: RedisKeyStore) -> None:
        nonlocal inside, most, turns
        for _ in range(3):
            async with store.lock():
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.003)
                inside -= 1
                turns += 1

    await asyncio.wait_for(
        asyncio.gather(*(take_turns(open_store(lease_ttl=5.0)) for _ in range(6))), 20
    )
    assert (most, turns) == (1, 18)


async def test_the_lease_is_a_random_token_with_a_ttl(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """Held: `{name}:lease` holds a fresh 128-bit token expiring within `lease_ttl`.
    Released: the key is gone.
    """
    store = open_store(lease_ttl=2.0)
    tokens = []
    for _ in range(2):
        async with store.lock():
            tokens.append(await redis_client.get(f"{{{store_name}}}:lease"))
            ttl = await redis_client.pttl(f"{{{store_name}}}:lease")
            assert 0 < ttl <= 2000
    assert await redis_client.exists(f"{{{store_name}}}:lease") == 0
    assert all(t is not None and len(t) == 32 for t in tokens)
    assert tokens[0] != tokens[1]


async def test_the_lease_is_renewed_while_held(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """Held for four lease lifetimes, the lease stays with its holder (its token never
    changes, another handle cannot take it); once released the other takes it at once.
    """
    holder, rival = open_store(lease_ttl=0.15), open_store(lease_ttl=0.15)
    lease = f"{{{store_name}}}:lease"
    rivals_lock = rival.lock()
    async with holder.lock():
        token = await redis_client.get(lease)
        rival_turn = asyncio.ensure_future(rivals_lock.__aenter__())
        try:
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:
                assert await redis_client.get(lease) == token
                assert not rival_turn.done()
                await asyncio.sleep(0.02)
        except BaseException:
            rival_turn.cancel()
            raise
    await asyncio.wait_for(rival_turn, 1.0)
    try:
        assert await redis_client.get(lease) not in (None, token)
    finally:
        await rivals_lock.__aexit__(None, None, None)


async def test_an_expired_holder_does_not_release_its_successors_lease(
    redis_server: RedisServer, store_name: str, redis_client: Redis
) -> None:
    """A holder that stalled past its lease (no renewal) leaves its block while another
    holds the lease: the compare-and-delete leaves the successor's lease in place.
    """
    stalled = FrozenLeaseStore(redis_server.url, name=store_name, lease_ttl=0.1)
    successor = RedisKeyStore(redis_server.url, name=store_name, lease_ttl=5.0)
    lease = f"{{{store_name}}}:lease"
    stalled_lock, successors_lock = stalled.lock(), successor.lock()

    async def expired() -> bool:
        return await redis_client.exists(lease) == 0

    try:
        await stalled_lock.__aenter__()
        await eventually(expired, bound=2.0)
        await successors_lock.__aenter__()
        theirs = await redis_client.get(lease)
        await stalled_lock.__aexit__(None, None, None)
        assert theirs is not None
        assert await redis_client.get(lease) == theirs
        await successors_lock.__aexit__(None, None, None)
        assert await redis_client.exists(lease) == 0
    finally:
        await stalled.aclose()
        await successor.aclose()


async def test_the_lease_is_released_when_the_block_raises(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """An exception inside `lock()` releases the lease on the way out."""
    store = open_store(lease_ttl=5.0)
    with pytest.raises(RuntimeError):
        async with store.lock():
            raise RuntimeError("boom")
    assert await redis_client.exists(f"{{{store_name}}}:lease") == 0


async def test_a_lease_lost_while_held_is_logged_without_keys(
    open_store: Opener, redis_client: Redis, store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If the lease vanishes under its holder, the renewal says so in the log."""
    store = open_store(lease_ttl=0.09)
    with caplog.at_level(logging.ERROR, logger="cs2cap_account.stores"):
        async with store.lock():
            await redis_client.delete(f"{{{store_name}}}:lease")

            async def logged() -> bool:
                return any("expired while held" in r.getMessage() for r in caplog.records)

            await eventually(logged, bound=2.0)


# -- changes() ---------------------------------------------------------------------------------


async def test_changes_yield_each_published_generation_at_once(open_store: Opener) -> None:
    """With polls a minute apart, each save still reaches `changes()` within moments:
    the initial poll says 0, then each save's message gives its generation.
    """
    writer, follower = open_store(), open_store(poll_interval=60.0)
    changes = follower.changes()
    try:
        assert await asyncio.wait_for(anext(changes), 2.0) == 0
        await writer.save(record(1), expected_generation=None)
        assert await asyncio.wait_for(anext(changes), 2.0) == 1
        await writer.save(record(2, ROOT_2), expected_generation=1)
        assert await asyncio.wait_for(anext(changes), 2.0) == 2
    finally:
        await changes.aclose()


async def test_changes_catch_a_lost_message_by_polling(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """A generation written without a message (as if it was lost) is yielded by the next
    poll: within `poll_interval` plus its 10 % jitter (plus scheduling slack).
    """
    follower = open_store(poll_interval=0.2)
    changes = follower.changes()
    try:
        assert await asyncio.wait_for(anext(changes), 2.0) == 0
        await redis_client.hset(f"{{{store_name}}}:record", "generation", "4")
        started = time.monotonic()
        assert await asyncio.wait_for(anext(changes), 2.0) == 4
        assert time.monotonic() - started <= 0.2 * 1.1 + SCHEDULING_SLACK
    finally:
        await changes.aclose()


def test_polls_are_spread_by_ten_percent(redis_server: RedisServer) -> None:
    """Each wait between polls is drawn from `poll_interval` ± 10 %, so a fleet started
    together does not poll in lockstep.
    """
    store = RedisKeyStore(redis_server.url, poll_interval=2.0)
    waits = [store._poll_wait() for _ in range(500)]
    assert all(1.8 <= wait <= 2.2 for wait in waits)
    assert max(waits) - min(waits) > 0.2


async def test_changes_poll_every_interval(open_store: Opener) -> None:
    """With nothing published, polls come every `poll_interval` (never early; late only
    by the time the loop takes to get to them).
    """
    follower = open_store(poll_interval=0.1)
    changes = follower.changes()
    try:
        await anext(changes)
        stamps = [time.monotonic()]
        for _ in range(5):
            assert await asyncio.wait_for(anext(changes), 2.0) == 0
            stamps.append(time.monotonic())
    finally:
        await changes.aclose()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.085 <= gap <= 0.11 + SCHEDULING_SLACK for gap in gaps), gaps


async def test_changes_subscribe_again_after_the_connection_is_cut(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """`CLIENT KILL` on the subscription: `changes()` subscribes again, and saves are
    delivered by message again, within moments although polls are a minute apart.

    A message published while the subscription is being made again may be missed (that is
    what polls are for), so the writer saves every 50 ms until one gets through.
    """
    writer, follower = open_store(), open_store(poll_interval=60.0)
    channel = f"{{{store_name}}}:changes"
    changes = follower.changes()

    async def subscribed() -> bool:
        counts = dict(await redis_client.pubsub_numsub(channel))
        return bool(counts.get(channel.encode(), 0) == 1)

    try:
        assert await asyncio.wait_for(anext(changes), 2.0) == 0
        await eventually(subscribed)
        assert await redis_client.client_kill_filter(_type="pubsub") >= 1
        pending = asyncio.ensure_future(anext(changes))
        try:
            await eventually(subscribed)
            started = time.monotonic()
            generation = 0
            while not pending.done():
                assert time.monotonic() - started < 5.0, "no message got through"
                await writer.save(record(generation + 1), expected_generation=generation or None)
                generation += 1
                await asyncio.wait([pending], timeout=0.05)
            assert 1 <= pending.result() <= generation
        finally:
            pending.cancel()
    finally:
        await changes.aclose()


async def test_aclose_ends_subscriptions(
    open_store: Opener, redis_client: Redis, store_name: str
) -> None:
    """Closing the store closes a subscription a `changes()` iterator still holds."""
    follower = open_store(poll_interval=60.0)
    channel = f"{{{store_name}}}:changes"
    changes = follower.changes()
    await anext(changes)

    async def subscribers(count: int) -> bool:
        return dict(await redis_client.pubsub_numsub(channel)).get(channel.encode()) == count

    await eventually(lambda: subscribers(1))
    await follower.aclose()
    await eventually(lambda: subscribers(0))
    await changes.aclose()


def test_redis_is_imported_only_when_a_store_is_made() -> None:
    """`from cs2cap_account import RedisKeyStore` loads neither redis nor cryptography;
    making a store loads redis, and a cipher loads cryptography.
    """
    code = """
import sys
from cs2cap_account import RedisKeyStore, FileKeyStore
assert not any(m.split(".")[0] in ("redis", "cryptography") for m in sys.modules), "early"
FileKeyStore("unused.json")
assert "cryptography" not in sys.modules, "file store"
FileKeyStore("unused.json", cipher=b"A" * 43 + b"=")
assert "cryptography.fernet" in sys.modules, "cipher"
assert "redis" not in sys.modules, "cipher"
RedisKeyStore("redis://127.0.0.1:1/0")
assert "redis" in sys.modules, "redis store"
print("ok")
"""
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


async def test_losing_redis_while_holding_the_lease_is_logged_not_raised(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis goes away while a rotation holds the lease: renewals fail (logged, retried),
    and leaving the block does not raise over what the block did: the release failure is
    logged, with how long the lease may still stand in the way.
    """
    executable = shutil.which("redis-server")
    assert executable is not None
    proc, port = start_redis_server(executable, tmp_path)
    store = RedisKeyStore(f"redis://127.0.0.1:{port}/0", lease_ttl=0.15)
    try:
        with caplog.at_level(logging.WARNING, logger="cs2cap_account.stores"):
            async with store.lock():
                stop_redis_server(proc)

                async def renewal_failed() -> bool:
                    return "could not renew the rotation lease" in caplog.text

                await eventually(renewal_failed, bound=5.0)
        assert "could not release the rotation lease" in caplog.text
        assert "it expires within" in caplog.text
    finally:
        stop_redis_server(proc)
        await store.aclose()


class GatedClock:
    """A virtual clock whose short sleeps return at once and whose long ones (a second or
    more) wait for `tick()`: a lease renewer then renews once per tick, not in a spin.
    """

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self._ticks = asyncio.Queue[None]()
        self._wall = FakeClock()

    def monotonic(self) -> float:
        """Virtual seconds (they do not matter here)."""
        return self._wall.monotonic()

    def now(self) -> dt.datetime:
        """Virtual wall time."""
        return self._wall.now()

    def tick(self) -> None:
        """Let one long sleep end."""
        self._ticks.put_nowait(None)

    async def sleep(self, seconds: float) -> None:
        """Record the wait; a long one lasts until the next tick."""
        self.sleeps.append(seconds)
        if seconds >= 1.0:
            await self._ticks.get()
        else:
            await asyncio.sleep(0)


async def test_waiting_for_and_renewing_the_lease_sleep_on_the_stores_clock(
    redis_server: RedisServer, store_name: str, redis_client: Redis
) -> None:
    """A handle made with `clock=` waits for a held lease on that clock (2 ms doubling to
    20 ms, each jittered down by up to half) and renews its own every third of its ttl
    there: ten virtual seconds for a 30 s lease, after which the lease is still its own.
    """
    clock = GatedClock()
    holder = RedisKeyStore(redis_server.url, name=store_name)
    waiter = RedisKeyStore(redis_server.url, name=store_name, clock=clock)
    lease = f"{{{store_name}}}:lease"
    try:
        taken, leave = asyncio.Event(), asyncio.Event()

        async def hold_then_leave() -> None:
            async with waiter.lock():
                taken.set()
                await leave.wait()

        async with holder.lock():
            entering = asyncio.create_task(hold_then_leave())
            await eventually(lambda: _true(len(clock.sleeps) >= 8), every=0.001)
            assert not taken.is_set()
        await asyncio.wait_for(taken.wait(), 10)
        ceilings = [min(0.002 * 2**i, 0.02) for i in range(8)]
        assert all(c / 2 <= w <= c for w, c in zip(clock.sleeps[:8], ceilings, strict=True))

        token = await redis_client.get(lease)
        await redis_client.pexpire(lease, 5_000)  # a renewal puts the 30 s back
        await eventually(lambda: _true(clock.sleeps[-1] == 10.0), every=0.001)
        clock.tick()
        await eventually(lambda: _true(clock.sleeps.count(10.0) == 2), every=0.001)
        assert await redis_client.get(lease) == token
        assert await redis_client.pttl(lease) > 5_000
        leave.set()
        await asyncio.wait_for(entering, 10)
    finally:
        await holder.aclose()
        await waiter.aclose()


async def _true(value: bool) -> bool:
    return value
