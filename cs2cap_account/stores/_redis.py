"""`RedisKeyStore`: one key for a whole fleet, on every process and host, in Redis.

Three Redis names hang off the store's `name` (default `cs2cap`):

- `<name>:record`, a hash: `generation` (an integer) and `record` (the `KeyRecord` as JSON,
  or as a Fernet token with `cipher=`). `save()` is one Lua script: compare the stored
  generation with the expected one, write both fields, publish the new generation.
- `<name>:lease`, a string: the rotation lease. `lock()` takes it with `SET NX PX` and a
  random token, renews it from a background task while held, and releases it with a
  compare-and-delete script, so a holder whose lease expired never deletes its
  successor's. A holder stalled past its lease is fenced off by the generation instead.
- `<name>:changes`, a channel: the generation after each save, as a hint. `changes()`
  yields it, and also polls the generation every `poll_interval` (jittered), so a
  process whose subscription was cut catches up on its own.

Every command is bounded by the store's `timeout`: a Redis that stops answering (frozen,
partitioned) makes an operation raise `StoreError` within it, never hang. A cancelled
`lock()` leaves no lease behind: a `SET` in flight is seen through before the lease is
released, and the release itself runs to its end.

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
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, TypeVar

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

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub
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

# KEYS[1] the lease. ARGV: token, ttl in ms. 1 if the lease was ours and is extended.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] the lease. ARGV: token. 1 if the lease was ours and is gone.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

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
    rotator = KeyRotator(client, store=store)
    ```

    Args:
        url_or_client: a `redis://` / `rediss://` / `unix://` URL (the store then owns the
            connection pool and closes it in `aclose()`), or a `redis.asyncio.Redis` of
            yours, which is left open.
        name: prefix of the store's Redis keys and channel; fleets sharing one Redis
            database use different names.
        lease_ttl: seconds a rotation lease lasts unless renewed; the holder renews it
            every third of that. A rotator that stalls longer loses the lease, and its
            save is then refused if another rotator saved meanwhile.
        poll_interval: seconds between polls of the stored generation in `changes()`.
        timeout: seconds any one Redis command may take (connecting included); a command
            that takes longer raises `StoreError`. With a URL the store's own connections
            get it as their socket timeouts too. It also bounds `aclose()`.
        cipher: a Fernet key (or a list: the first encrypts, any decrypts); the record is
            then stored encrypted. Needs `cryptography` (`cs2cap-account[crypto]`).
        clock: what waiting for the lease and renewing it sleep on (the system clock by
            default). `changes()` waits on its subscription's socket, so it keeps the
            event loop's time.

    A save is as durable as the Redis server is configured to make it (AOF with
    `appendfsync always`, or replicas): the key lives nowhere else.

    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        name: str = "cs2cap",
        lease_ttl: float = 30.0,
        poll_interval: float = 5.0,
        timeout: float = 5.0,
        cipher: CipherKey | RecordCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("name must not be empty")
        lease_ttl = _seconds("lease_ttl", lease_ttl, at_least=_MIN_LEASE_TTL)
        poll_interval = _seconds("poll_interval", poll_interval, at_least=_MIN_POLL_INTERVAL)
        timeout = _seconds("timeout", timeout, at_least=_MIN_TIMEOUT)
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                'RedisKeyStore needs redis: pip install "cs2cap-account[redis]"'
            ) from exc
        self._cipher = make_cipher(cipher)
        if isinstance(url_or_client, str):
            self._redis: Redis = Redis.from_url(
                url_or_client, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._owns_client = True
        else:
            self._redis = url_or_client
            self._owns_client = False
        self.name = name
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._record_key = f"{name}:record"
        self._lease_key = f"{name}:lease"
        self.channel = f"{name}:changes"
        self._save_script: AsyncScript = self._redis.register_script(_SAVE)
        self._renew_script: AsyncScript = self._redis.register_script(_RENEW)
        self._release_script: AsyncScript = self._redis.register_script(_RELEASE)
        self._local = asyncio.Lock()
        self._subscriptions: set[PubSub] = set()
        self._where = f"the Redis store {name!r}"
        self._record_where = f"the record hash {self._record_key!r} of {self._where}"
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        # getattr: a half-built store (its __init__ raised) may be shown in captured locals.
        encrypted = ", encrypted" if getattr(self, "_cipher", None) is not None else ""
        return f"RedisKeyStore(name={getattr(self, 'name', None)!r}{encrypted})"

    # -- the KeyStore protocol --------------------------------------------------------------

    async def load(self) -> KeyRecord | None:
        """The stored record, or None if nothing was saved under this name yet."""
        generation, data = await self._call(
            "read", self._redis.hmget(self._record_key, ["generation", "record"])
        )
        if generation is None and data is None:
            return None
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
        (None: unless the store is empty).
        """
        payload = seal_record_bytes(self._cipher, dump_record(record))
        expected = "" if expected_generation is None else str(expected_generation)
        answer = await self._call(
            "write",
            self._save_script(
                keys=[self._record_key],
                args=[expected, str(record.generation), payload, self.channel, record.lineage],
            ),
        )
        done, stored = answer[0], answer[1]
        if int(done) != 1:
            actual = _as_str(stored)
            why = (
                "another rotator saved first"
                if len(answer) < 3
                else "of another lineage: the store was reset since"
            )
            raise StaleGenerationError(
                f"{self._where} holds generation {actual or None}, not {expected_generation}: "
                + why,
                expected_generation=-1 if expected_generation is None else expected_generation,
                stored_generation=int(actual) if actual else -1,
            )

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the fleet-wide rotation lease (renewed in the background while held).

        However it ends (the block raising, a cancellation while the lease is being taken,
        renewed or given back), the lease is released by its token before this returns.
        """
        async with self._local:
            token = secrets.token_hex(16)
            try:
                await self._acquire(token)
                renewer = asyncio.ensure_future(self._keep_lease(token))
                try:
                    yield
                finally:
                    renewer.cancel()
                    # Wait for it without swallowing a cancellation aimed at this task.
                    await asyncio.wait([renewer])
            finally:
                # A compare-and-delete on our token: harmless if the lease was never taken.
                await _to_the_end(self._release(token))

    async def aclose(self) -> None:
        """Close open subscriptions, and the connection pool if the store made it.

        Bounded by `timeout` even if the server does not answer; a close that fails or
        takes longer is logged, not raised.
        """
        for pubsub in list(self._subscriptions):
            await _close_quietly(pubsub, self.timeout)
        self._subscriptions.clear()
        if self._owns_client:
            try:
                await asyncio.wait_for(self._redis.aclose(), self.timeout)
            except Exception as exc:  # closing must not raise
                logger.warning(
                    "closing the connections of %s failed (%s)",
                    self._where,
                    redact_text(str(exc)) or type(exc).__name__,
                )

    # -- following other processes ----------------------------------------------------------

    async def generation(self) -> int:
        """The stored generation (0 for an empty store), without reading the record."""
        value = await self._call("read", self._redis.hget(self._record_key, "generation"))
        return 0 if value is None else int(_as_str(value))

    async def changes(self) -> AsyncGenerator[int, None]:
        """Yield the stored generation whenever it may have changed, until closed.

        At once on start, then on every message on the channel, and also every
        `poll_interval` (± 10 %) from a poll, so a lost message (a cut connection, a
        restarted server) costs at most one poll interval. A subscription that breaks is
        made again, with backoff (50 ms, doubling up to `poll_interval`); polls go on
        meanwhile. A failing poll raises `StoreError`.
        """
        from redis.exceptions import RedisError

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
                    except (RedisError, OSError, asyncio.TimeoutError) as exc:
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
                except (RedisError, OSError, asyncio.TimeoutError) as exc:
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

    async def _acquire(self, token: str) -> None:
        """Take the lease, waiting (and retrying) while another process holds it."""
        ttl_ms = max(1, round(self.lease_ttl * 1000))
        most = min(_LEASE_WAIT_MAX, self.lease_ttl / 10)
        wait = min(_LEASE_WAIT_FIRST, most)
        while True:
            # Seen through even if this task is cancelled meanwhile: a SET that lands after
            # its caller left would hold a lease no one releases.
            taken = await _to_the_end(
                self._call(
                    "take the rotation lease of",
                    self._redis.set(self._lease_key, token, nx=True, px=ttl_ms),
                )
            )
            if taken:
                return
            await self._clock.sleep(wait * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            wait = min(wait * 2, most)

    async def _keep_lease(self, token: str) -> None:
        """Renew the lease every third of its ttl while held; stop if it was lost."""
        ttl_ms = max(1, round(self.lease_ttl * 1000))
        while True:
            await self._clock.sleep(self.lease_ttl / 3)
            try:
                held = await self._call(
                    "renew the rotation lease of",
                    self._renew_script(keys=[self._lease_key], args=[token, ttl_ms]),
                )
            except StoreError as exc:
                logger.warning("%s; trying again", exc)
                continue
            if not held:
                logger.error(
                    "the rotation lease of %s expired while held; a save based on what it "
                    "read will be refused if another rotator saved meanwhile",
                    self._where,
                )
                return

    async def _release(self, token: str) -> None:
        """Delete the lease if it is still ours; a failure only delays the next holder."""
        try:
            await self._call(
                "release the rotation lease of",
                self._release_script(keys=[self._lease_key], args=[token]),
            )
        except StoreError as exc:
            logger.warning("%s; it expires within %.1f s", exc, self.lease_ttl)

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
        from redis.exceptions import RedisError

        try:
            return await asyncio.wait_for(command, self.timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:  # a socket's is an OSError
            raise StoreError(
                f"could not {action} {self._where}: no answer within {self.timeout:g} s"
            ) from exc
        except (RedisError, OSError) as exc:
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
