"""`RedisKeyStore`: one key for a whole fleet, on every process and host, in Redis.

Three Redis names hang off the store's `name` (default `cs2cap`), all under one hash tag
(`{name}`), so that on a Redis Cluster they live in one slot, on one node:

- `{name}:record`, a hash: `generation` (an integer), `lineage`, and `record` (the
  `KeyRecord` as JSON, or as a Fernet token with `cipher=`). `save()` is one Lua script:
  compare the stored generation (and lineage) with the expected one, write the fields,
  publish the new generation. With `min_replicas`, the script and a `WAIT` go down one
  connection, and the save returns only once that many replicas have the write.
- `{name}:lease`, a string: the rotation lease, redis-py's asyncio `Lock` (`SET NX PX`
  with a random token, renewed while held, released by a compare-and-delete script), so
  a holder whose lease expired never deletes its successor's. A holder stalled past its
  lease is fenced off by the generation instead.
- `{name}:changes`, a channel: the generation after each save, as a hint. `changes()`
  yields it, and also polls the generation every `poll_interval` (jittered), so a
  process whose subscription was cut catches up on its own.

A URL names the topology (`_redis_url`): one server, a Redis Cluster, or a primary
managed by Sentinel. Every command is bounded by the store's `timeout`: a Redis that stops
answering (frozen, partitioned) makes an operation raise `StoreError` within it, never
hang. A cancelled `lock()` leaves no lease behind: a `SET` in flight is seen through before
the lease is released, and the release itself runs to its end.

Stores written by versions before the hash tag (`<name>:record`) are moved on first load;
see `_redis_move`.

`redis` is imported when a store is made (`pip install "cs2cap-account[redis]"`), never by
`import cs2cap_account`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing, asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, TypeVar

from cs2cap_account._arguments import check_count
from cs2cap_account._clock import Clock, SystemClock
from cs2cap_account._secret import redact_text
from cs2cap_account.errors import StaleGenerationError, StoreError
from cs2cap_account.stores._cipher import (
    CipherKey,
    RecordCipher,
    make_cipher,
    open_record_bytes,
    seal_record_bytes,
)
from cs2cap_account.stores._record import KeyRecord, dump_record, load_record
from cs2cap_account.stores._redis_move import finish_interrupted_move, move_before_hash_tag
from cs2cap_account.stores._redis_url import Connected, connect, parse_redis_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.lock import Lock
    from redis.commands.core import AsyncScript

__all__ = ["RedisKeyStore"]

T = TypeVar("T")

logger: Final = logging.getLogger("cs2cap_account.stores")

# KEYS[1] the record hash. ARGV: expected generation ('' for an empty store), new
# generation, record bytes, channel, the record's lineage. Returns {1, new} on success,
# {0, stored} if fenced by the generation, {0, stored, 'lineage'} if the stored record is of
# another lineage (the store was reset and written again: its numbers repeat). The lineage
# has a field of its own beside the record, since an encrypted record cannot be read here.
_SAVE: Final = """
local stored = redis.call('HGET', KEYS[1], 'generation')
if not stored then stored = '' end
if stored ~= ARGV[1] then return {0, stored} end
if stored ~= '' and (redis.call('HGET', KEYS[1], 'lineage') or '') ~= ARGV[5] then
  return {0, stored, 'lineage'}
end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'lineage', ARGV[5], 'record', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return {1, ARGV[2]}
"""

# KEYS[1] the record hash. ARGV: its generation and lineage. Writes that generation again,
# so that a WAIT on this connection covers an earlier save of it (replication is in
# order). 1 if that generation of that lineage is still stored, else 0.
_TOUCH: Final = """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'lineage') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[1])
return 1
"""

# Leases whose release failed, remembered to release later; older ones simply expire.
_MAX_UNRELEASED: Final = 8
_POLL_JITTER: Final = 0.1  # each poll waits poll_interval * (1 ± 0.1)
# Seconds between tries for a held lease: from 2 ms (a follower adopting a key holds it
# that long), doubling up to 20 ms (a whole rotation), each jittered down by up to half.
_LEASE_WAIT_FIRST: Final = 0.002
_LEASE_WAIT_MAX: Final = 0.02
_RESUBSCRIBE_FIRST: Final = 0.05  # seconds before subscribing again after a failure
# The shortest lease: a few round trips. Anything shorter would expire before it is renewed.
_MIN_LEASE_TTL: Final = 0.05
# The shortest poll interval: a tighter loop would only load the server.
_MIN_POLL_INTERVAL: Final = 0.01
# The shortest command timeout: less than a round trip on loopback fails every command.
_MIN_TIMEOUT: Final = 0.01


class RedisKeyStore:
    """Keeps the key in Redis, for every process and host of a fleet.

    ```python
    store = RedisKeyStore("redis://redis.internal:6379/0", cipher=os.environ["KEY_CIPHER"])
    store = RedisKeyStore("redis+sentinel://s1:26379,s2:26379,s3:26379/keys", min_replicas=1)
    store = RedisKeyStore("redis+cluster://node1:6379,node2:6379")
    rotator = KeyRotator(client, store=store)
    ```

    Args:
        url_or_client: a URL (the store then owns the connections and closes them in
            `aclose()`): `redis://` / `rediss://` / `unix://` for one server,
            `redis+cluster://host:port[,host:port...]` for a Redis Cluster, or
            `redis+sentinel://host:port[,host:port...]/SERVICE[/DB]` for the primary the
            sentinels monitor as SERVICE. Or a client of yours, which is left open: a
            `redis.asyncio.Redis` (e.g. `Sentinel(...).master_for(...)`) or a
            `redis.asyncio.cluster.RedisCluster`.
        name: the hash tag of the store's Redis keys and channel (`{name}:record`, ...);
            fleets sharing one Redis database use different names.
        lease_ttl: seconds a rotation lease lasts unless renewed; the holder renews it
            every third of that. A rotator that stalls longer loses the lease, and its
            save is then refused if another rotator saved meanwhile.
        poll_interval: seconds between polls of the stored generation in `changes()`.
        timeout: seconds any one Redis command may take (connecting included); a command
            that takes longer raises `StoreError`. With a URL the store's own connections
            get it as their socket timeouts too. It also bounds `aclose()`.
        min_replicas: replicas that must hold a save before it returns (`WAIT`); 0 (the
            default) returns once the primary has it. A save that fewer replicas confirm
            within `replica_timeout` raises `StoreError`: the rotator then holds the new
            key, retries, and announces nothing until a save is confirmed.
        replica_timeout: seconds a save waits for `min_replicas` (shorter than `timeout`).
        cipher: a Fernet key (or a list: the first encrypts, any decrypts); the record is
            then stored encrypted. Needs `cryptography` (`cs2cap-account[crypto]`).
        clock: what waiting for the lease and renewing it sleep on (the system clock by
            default). `changes()` waits on its subscription's socket, so it keeps the
            event loop's time.

    A save is as durable as the primary and `min_replicas` make it: see docs/fleet.md
    for what each setting survives. The key lives nowhere else.

    """

    def __init__(
        self,
        url_or_client: str | Redis | RedisCluster,
        *,
        name: str = "cs2cap",
        lease_ttl: float = 30.0,
        poll_interval: float = 5.0,
        timeout: float = 5.0,
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
        cipher: CipherKey | RecordCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not name or any(brace in name for brace in "{}"):
            raise ValueError("name must be non-empty, without braces (it is the hash tag)")
        lease_ttl = _seconds("lease_ttl", lease_ttl, at_least=_MIN_LEASE_TTL)
        poll_interval = _seconds("poll_interval", poll_interval, at_least=_MIN_POLL_INTERVAL)
        timeout = _seconds("timeout", timeout, at_least=_MIN_TIMEOUT)
        min_replicas = check_count(min_replicas, "min_replicas") or 0
        replica_timeout = _seconds("replica_timeout", replica_timeout, at_least=_MIN_TIMEOUT)
        if min_replicas and replica_timeout >= timeout:
            raise ValueError(
                f"replica_timeout ({replica_timeout:g} s) must be shorter than timeout "
                f"({timeout:g} s), which bounds the save and its wait for replicas"
            )
        try:
            from redis.asyncio import Redis
            from redis.asyncio.cluster import RedisCluster
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                'RedisKeyStore needs redis: pip install "cs2cap-account[redis]"'
            ) from exc
        self._cipher = make_cipher(cipher)
        if isinstance(url_or_client, str):
            self._connected: Connected | None = connect(
                parse_redis_url(url_or_client), timeout=timeout
            )
            self._redis: Redis | RedisCluster = self._connected.client
        elif isinstance(url_or_client, (Redis, RedisCluster)):
            self._connected = None
            self._redis = url_or_client
        else:
            raise TypeError(
                "url_or_client must be a Redis URL, a redis.asyncio.Redis or a "
                f"redis.asyncio.cluster.RedisCluster, not {type(url_or_client).__name__}"
            )
        self._cluster = isinstance(self._redis, RedisCluster)
        self.name = name
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.record_key = f"{{{name}}}:record"
        self.lease_key = f"{{{name}}}:lease"
        self.channel = f"{{{name}}}:changes"
        self._move_finished = False  # an interrupted move of an older store, finished
        self._save_script: AsyncScript = self._redis.register_script(_SAVE)
        self._touch_script: AsyncScript = self._redis.register_script(_TOUCH)
        self._local = asyncio.Lock()
        # Leases whose release failed (Redis down): released before the next lock().
        self._unreleased: list[Lock] = []
        self._node_clients: dict[str, Redis] = {}  # on a cluster: see `_record_node`
        self._subscriptions: set[PubSub] = set()
        self._where = f"the Redis store {name!r}"
        self._record_where = f"the record hash {self.record_key!r} of {self._where}"
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        # getattr: a half-built store (its __init__ raised) may be shown in captured locals.
        encrypted = ", encrypted" if getattr(self, "_cipher", None) is not None else ""
        return f"RedisKeyStore(name={getattr(self, 'name', None)!r}{encrypted})"

    # -- the KeyStore protocol --------------------------------------------------------------

    async def load(self) -> KeyRecord | None:
        """The stored record, or None if nothing was saved under this name yet."""
        generation, data = await self._call(
            "read", self._redis.hmget(self.record_key, ["generation", "record"])
        )
        if generation is None and data is None:
            moved = await move_before_hash_tag(
                self._redis,
                self._call,
                name=self.name,
                record_key=self.record_key,
                lease_ttl=self.lease_ttl,
                where=self._where,
            )
            if not moved:
                return None
            self._move_finished = True
            generation, data = await self._call(
                "read", self._redis.hmget(self.record_key, ["generation", "record"])
            )
        elif not self._move_finished:
            await finish_interrupted_move(self._redis, self._call, name=self.name)
            self._move_finished = True
        if generation is None or data is None:
            raise StoreError(
                f"{self._record_where} holds a partial record: one of its fields is missing"
            )
        raw = open_record_bytes(self._cipher, _as_bytes(data), source=self._record_where)
        record = load_record(raw, source=self._record_where)
        if str(record.generation) != _as_str(generation):
            raise StoreError(
                f"{self._record_where} is inconsistent: its generation field says "
                f"{_as_str(generation)}, its record {record.generation}"
            )
        return record

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Compare-and-set on the generation, in one script; then publish the new generation.

        Raises `StaleGenerationError` if the stored generation is not `expected_generation`
        (None: unless the store is empty). With `min_replicas`, returns only once that many
        replicas confirm the write, else raises `StoreError`; saved again, a record an
        unconfirmed attempt already stored is confirmed rather than fenced off.
        """
        payload = seal_record_bytes(self._cipher, dump_record(record))
        expected = "" if expected_generation is None else str(expected_generation)
        args: list[str | bytes] = [
            expected,
            str(record.generation),
            payload,
            self.channel,
            record.lineage,
        ]
        if not self.min_replicas:
            answer = await self._call("write", self._save_script(keys=[self.record_key], args=args))
            self._fenced_unless_saved(answer, expected_generation)
            return
        answer, confirmed = await self._call("write", self._and_wait(_SAVE, args))
        if int(answer[0]) != 1:
            if _as_str(answer[1]) != str(record.generation) or await self.load() != record:
                self._fenced_unless_saved(answer, expected_generation)
            # An earlier attempt stored this very record, unconfirmed: confirm it now.
            touched, confirmed = await self._call(
                "write", self._and_wait(_TOUCH, [str(record.generation), record.lineage])
            )
            if not touched:
                self._fenced_unless_saved([0, b""], expected_generation)
        if int(confirmed) < self.min_replicas:
            raise StoreError(
                f"could not write {self._where} durably: {int(confirmed)} of "
                f"{self.min_replicas} replicas confirmed the save within "
                f"{self.replica_timeout:g} s, so a failover could lose it"
            )

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the fleet-wide rotation lease (renewed in the background while held).

        However it ends (the block raising, a cancellation while the lease is being taken,
        renewed or given back), the lease is released by its token before this returns.
        """
        async with self._local:
            for stale in list(self._unreleased):  # releases that failed (Redis was down)
                await _to_the_end(self._release(stale))
            lease = self._redis.lock(
                self.lease_key, timeout=self.lease_ttl, blocking=False, thread_local=False
            )
            try:
                await self._acquire(lease)
                renewer = asyncio.ensure_future(self._keep_lease(lease))
                try:
                    yield
                finally:
                    renewer.cancel()
                    # Wait for it without swallowing a cancellation aimed at this task.
                    await asyncio.wait([renewer])
            finally:
                # A compare-and-delete on our token, if the lease was taken at all.
                await _to_the_end(self._release(lease))

    async def aclose(self) -> None:
        """Close open subscriptions, and the connections if the store made them.

        Bounded by `timeout` even if the server does not answer; a close that fails or
        takes longer is logged, not raised.
        """
        for pubsub in list(self._subscriptions):
            await _close_quietly(pubsub, self.timeout)
        self._subscriptions.clear()
        for node_client in self._node_clients.values():
            with suppress(Exception):
                await asyncio.wait_for(node_client.aclose(), self.timeout)
        self._node_clients.clear()
        if self._connected is not None:
            try:
                await asyncio.wait_for(self._connected.aclose(), self.timeout)
            except Exception as exc:  # closing must not raise
                logger.warning(
                    "closing the connections of %s failed (%s)",
                    self._where,
                    redact_text(str(exc)) or type(exc).__name__,
                )

    # -- following other processes ----------------------------------------------------------

    async def generation(self) -> int:
        """The stored generation (0 for an empty store), without reading the record."""
        value = await self._call("read", self._redis.hget(self.record_key, "generation"))
        return 0 if value is None else int(_as_str(value))

    async def changes(self) -> AsyncGenerator[int, None]:
        """Yield the stored generation whenever it may have changed, until closed.

        At once on start, then on every message on the channel, and also every
        `poll_interval` (± 10 %) from a poll, so a lost message (a cut connection, a
        restarted server) costs at most one poll interval. A subscription that breaks is
        made again, with backoff (50 ms, doubling up to `poll_interval`); polls go on
        meanwhile. A failing poll raises `StoreError`.

        On a Redis Cluster the channel is an ordinary one (`PUBLISH` reaches every node),
        followed through redis-py's cluster pub/sub.
        """
        if self._cluster:
            await self._call("read", self._cluster_ready())
        async with aclosing(self._follow()) as following:
            async for generation in following:
                yield generation

    async def _follow(self) -> AsyncGenerator[int, None]:
        """`changes()`, once the client can subscribe."""
        from redis.exceptions import RedisClusterException, RedisError

        broke = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
        loop = asyncio.get_running_loop()
        pubsub: PubSub | None = None
        next_poll = subscribe_at = loop.time()
        backoff = _RESUBSCRIBE_FIRST
        broken: BaseException | None = None
        try:
            while True:
                now = loop.time()
                if pubsub is None and now >= subscribe_at:
                    pubsub = self._redis.pubsub()
                    self._subscriptions.add(pubsub)
                    try:
                        await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout)
                    except broke as exc:
                        await self._drop(pubsub)
                        pubsub, broken = None, exc
                        subscribe_at = loop.time() + backoff
                        backoff = min(backoff * 2, self.poll_interval)
                if now >= next_poll:
                    generation = await self.generation()
                    next_poll = loop.time() + self._poll_wait()
                    yield generation
                    continue
                if pubsub is None:
                    await asyncio.sleep(min(next_poll, subscribe_at) - now)
                    continue
                try:
                    message = await asyncio.wait_for(
                        pubsub.get_message(timeout=next_poll - now),
                        next_poll - now + self.timeout,
                    )
                except broke as exc:
                    if broken is None:
                        logger.warning(
                            "the subscription to %s broke (%s); polling until it is back",
                            self.channel,
                            redact_text(str(exc)) or type(exc).__name__,
                        )
                    await self._drop(pubsub)
                    pubsub, broken = None, exc
                    subscribe_at = loop.time() + backoff
                    backoff = min(backoff * 2, self.poll_interval)
                    continue
                kind = None if message is None else message.get("type")
                if kind == "subscribe":
                    if broken is not None:
                        logger.info("subscribed to %s again", self.channel)
                    broken, backoff = None, _RESUBSCRIBE_FIRST
                elif kind == "message" and message is not None:
                    yield int(_as_str(message["data"]))
        finally:
            if pubsub is not None:
                await self._drop(pubsub)

    # -- internals ------------------------------------------------------------------------------

    async def _acquire(self, lease: Lock) -> None:
        """Take the lease, waiting (and retrying) while another process holds it.

        A `SET NX` whose outcome is unknown (it failed or timed out once sent) may have
        taken the lease: the lease is then released by its token like one taken, and a
        `SET NX` refused because our own token is already there (a resend by redis-py's
        retry after a lost reply) counts as taken.
        """
        most = min(_LEASE_WAIT_MAX, self.lease_ttl / 10)
        wait = min(_LEASE_WAIT_FIRST, most)
        token = secrets.token_hex(16)
        while True:
            # Seen through even if this task is cancelled meanwhile: a SET that lands after
            # its caller left would hold a lease no one releases.
            try:
                taken = await _to_the_end(
                    self._call("take the rotation lease of", lease.acquire(token=token))
                )
                if not taken:
                    held = await _to_the_end(
                        self._call("read the rotation lease of", self._redis.get(self.lease_key))
                    )
                    taken = _as_str(held) == token if held is not None else False
            except BaseException:
                lease.local.token = token.encode()  # may be ours: released by its token
                raise
            if taken:
                lease.local.token = token.encode()
                return
            await self._clock.sleep(wait * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            wait = min(wait * 2, most)

    async def _keep_lease(self, lease: Lock) -> None:
        """Renew the lease every third of its ttl while held; stop if it was lost."""
        from redis.exceptions import LockNotOwnedError

        while True:
            await self._clock.sleep(self.lease_ttl / 3)
            try:
                await self._call("renew the rotation lease of", lease.reacquire())
            except StoreError as exc:
                if isinstance(exc.__cause__, LockNotOwnedError):
                    logger.error(
                        "the rotation lease of %s expired while held; a save based on what "
                        "it read will be refused if another rotator saved meanwhile",
                        self._where,
                    )
                    return
                logger.warning("%s; trying again", exc)

    async def _release(self, lease: Lock) -> None:
        """Delete the lease if it is still ours.

        A release that fails (Redis down) is tried again before this store next takes the
        lease, so a Redis that comes back with the lease (persistence) does not make this
        process wait out its own; other processes wait at most `lease_ttl`.
        """
        from redis.exceptions import LockNotOwnedError

        if lease.local.token is None:
            return  # never taken
        try:
            await self._call("release the rotation lease of", lease.release())
        except StoreError as exc:
            if not isinstance(exc.__cause__, LockNotOwnedError):
                if lease not in self._unreleased:
                    self._unreleased = [*self._unreleased, lease][-_MAX_UNRELEASED:]
                logger.warning("%s; it expires within %.1f s", exc, self.lease_ttl)
                return
        if lease in self._unreleased:
            self._unreleased.remove(lease)

    async def _and_wait(self, script: str, args: list[Any]) -> list[Any]:
        """Run `script` on the record, then `WAIT min_replicas`, down one connection.

        `WAIT` counts the replicas that have every write sent on its connection, so the two
        must share one: a pipeline (on a cluster, both sent to the node of the record).
        """
        command = ("EVAL", script, 1, self.record_key, *args)
        wait = ("WAIT", self.min_replicas, max(1, round(self.replica_timeout * 1000)))
        target = await self._record_node() if self._cluster else self._redis
        pipe = target.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command(*wait)
        try:
            return await pipe.execute()
        except Exception:
            if self._cluster:  # moved (a failover), or the node went away: map it again
                await self._cluster_ready(refresh=True)
            raise

    async def _record_node(self) -> Redis:
        """A plain client of the cluster node that holds the record, made once per node.

        A cluster pipeline may resend its commands elsewhere after an error (a `WAIT`
        on another connection confirms nothing), so the save and its `WAIT` go through
        a client bound to that one node; a node that no longer serves the slot answers
        `MOVED`, which fails the save (retried once the slot map is read again).
        """
        from redis.asyncio import ConnectionPool, Redis
        from redis.exceptions import SlotNotCoveredError

        cluster = await self._cluster_ready()
        node = cluster.get_node_from_key(self.record_key)
        if node is None:
            raise SlotNotCoveredError(f"no node serves the slot of {self.record_key!r}")
        client = self._node_clients.get(node.name)
        if client is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            client = self._node_clients[node.name] = Redis.from_pool(pool)
        return client

    async def _cluster_ready(self, *, refresh: bool = False) -> RedisCluster:
        """The cluster client, its slot map filled in (its first command does that).

        Pub/sub and the save's node-bound pipeline look a slot up in the map before
        sending anything, so they need it filled in first; `refresh` reads it again.
        """
        from redis.asyncio.cluster import RedisCluster

        assert isinstance(self._redis, RedisCluster)
        if refresh:
            await self._redis.nodes_manager.initialize()
        return await self._redis.initialize()

    def _fenced_unless_saved(self, answer: list[Any], expected_generation: int | None) -> None:
        """Raise `StaleGenerationError` unless the save script's `answer` says it saved."""
        if int(answer[0]) == 1:
            return
        actual = _as_str(answer[1])
        why = (
            "another rotator saved first"
            if len(answer) < 3
            else "of another lineage: the store was reset since"
        )
        raise StaleGenerationError(
            f"{self._where} holds generation {actual or None}, not {expected_generation}: " + why,
            expected_generation=-1 if expected_generation is None else expected_generation,
            stored_generation=int(actual) if actual.isdigit() else -1,
        )

    async def _drop(self, pubsub: PubSub) -> None:
        self._subscriptions.discard(pubsub)
        await _close_quietly(pubsub, self.timeout)

    def _poll_wait(self) -> float:
        spread = random.uniform(-_POLL_JITTER, _POLL_JITTER)  # noqa: S311 - jitter
        return self.poll_interval * (1 + spread)

    async def _call(self, action: str, command: Awaitable[T]) -> T:
        """Await one Redis command within `timeout`; any failure is a `StoreError`.

        The message is key-free and the cause chained. redis-py's own retries happen
        inside the bound, so the bound is the whole of what the caller waits.
        """
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return await asyncio.wait_for(command, self.timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:  # a socket's is an OSError
            raise StoreError(
                f"could not {action} {self._where}: no answer within {self.timeout:g} s"
            ) from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            detail = redact_text(str(exc)) or type(exc).__name__
            raise StoreError(f"could not {action} {self._where}: {detail}") from exc


def _seconds(name: str, value: object, *, at_least: float) -> float:
    """`value` as a finite number of seconds above `at_least`, or `TypeError`/`ValueError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0 or seconds < at_least:
        floor = f" and at least {at_least:g}" if at_least else ""
        raise ValueError(
            f"{name} must be a positive, finite number of seconds{floor}; got {value!r}"
        )
    return seconds


async def _to_the_end(work: Awaitable[T]) -> T:
    """Await `work`; if the caller is cancelled meanwhile, let it finish, then re-raise.

    For the lease's commands, whose effect on the server must be known (and undone)
    before the caller moves on. `work` must be bounded: a Redis call made by `_call`.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            with suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # seen: it is the cancellation that is raised
        raise


async def _close_quietly(pubsub: PubSub, timeout: float) -> None:
    with suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), timeout)  # type: ignore[no-untyped-call]


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
