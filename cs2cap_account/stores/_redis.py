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

`redis` is imported when a store is made (`pip install "cs2cap-account[redis]"`), never by
`import cs2cap_account`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final

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

logger: Final = logging.getLogger("cs2cap_account.stores")

# KEYS[1] the record hash. ARGV: expected generation ('' for an empty store), new
# generation, record bytes, channel. Returns {1, new} on success, {0, stored} if fenced.
_SAVE: Final = """
local stored = redis.call('HGET', KEYS[1], 'generation')
if not stored then stored = '' end
if stored ~= ARGV[1] then return {0, stored} end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'record', ARGV[3])
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
        cipher: CipherKey | RecordCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not name:
            raise ValueError("name must not be empty")
        if lease_ttl <= 0 or poll_interval <= 0:
            raise ValueError("lease_ttl and poll_interval must be positive")
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                'RedisKeyStore needs redis: pip install "cs2cap-account[redis]"'
            ) from exc
        self._cipher = make_cipher(cipher)
        if isinstance(url_or_client, str):
            self._redis: Redis = Redis.from_url(url_or_client)
            self._owns_client = True
        else:
            self._redis = url_or_client
            self._owns_client = False
        self.name = name
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
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
        encrypted = ", encrypted" if self._cipher is not None else ""
        return f"RedisKeyStore(name={self.name!r}{encrypted})"

    # -- the KeyStore protocol --------------------------------------------------------------

    async def load(self) -> KeyRecord | None:
        """The stored record, or None if nothing was saved under this name yet."""
        async with self._translated("read"):
            generation, data = await self._redis.hmget(self._record_key, ["generation", "record"])
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
        async with self._translated("write"):
            done, stored = await self._save_script(
                keys=[self._record_key],
                args=[expected, str(record.generation), payload, self.channel],
            )
        if int(done) != 1:
            actual = _as_str(stored)
            raise StaleGenerationError(
                f"{self._where} holds generation {actual or None}, not {expected_generation}: "
                "another rotator saved first",
                expected_generation=-1 if expected_generation is None else expected_generation,
                stored_generation=int(actual) if actual else -1,
            )

    @asynccontextmanager
    async def lock(self) -> AsyncIterator[None]:
        """Hold the fleet-wide rotation lease (renewed in the background while held)."""
        async with self._local:
            token = secrets.token_hex(16)
            await self._acquire(token)
            renewer = asyncio.ensure_future(self._keep_lease(token))
            try:
                yield
            finally:
                renewer.cancel()
                # Wait for it without swallowing a cancellation aimed at this task.
                await asyncio.wait([renewer])
                await self._release(token)

    async def aclose(self) -> None:
        """Close open subscriptions, and the connection pool if the store made it."""
        for pubsub in list(self._subscriptions):
            await _close_quietly(pubsub)
        self._subscriptions.clear()
        if self._owns_client:
            await self._redis.aclose()

    # -- following other processes ----------------------------------------------------------

    async def generation(self) -> int:
        """The stored generation (0 for an empty store), without reading the record."""
        async with self._translated("read"):
            value = await self._redis.hget(self._record_key, "generation")
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
                        await pubsub.subscribe(self.channel)
                    except (RedisError, OSError) as exc:
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
                    message = await pubsub.get_message(timeout=next_poll - now)
                except (RedisError, OSError) as exc:
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
            async with self._translated("take the rotation lease of"):
                if await self._redis.set(self._lease_key, token, nx=True, px=ttl_ms):
                    return
            await self._clock.sleep(wait * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            wait = min(wait * 2, most)

    async def _keep_lease(self, token: str) -> None:
        """Renew the lease every third of its ttl while held; stop if it was lost."""
        ttl_ms = max(1, round(self.lease_ttl * 1000))
        while True:
            await self._clock.sleep(self.lease_ttl / 3)
            try:
                async with self._translated("renew the rotation lease of"):
                    held = await self._renew_script(keys=[self._lease_key], args=[token, ttl_ms])
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
            async with self._translated("release the rotation lease of"):
                await self._release_script(keys=[self._lease_key], args=[token])
        except StoreError as exc:
            logger.warning("%s; it expires within %.1f s", exc, self.lease_ttl)

    async def _drop(self, pubsub: PubSub) -> None:
        self._subscriptions.discard(pubsub)
        await _close_quietly(pubsub)

    def _poll_wait(self) -> float:
        spread = random.uniform(-_POLL_JITTER, _POLL_JITTER)  # noqa: S311 - jitter
        return self.poll_interval * (1 + spread)

    @asynccontextmanager
    async def _translated(self, action: str) -> AsyncIterator[None]:
        """Turn redis and socket errors into `StoreError` (chained, key-free message)."""
        from redis.exceptions import RedisError

        try:
            yield
        except (RedisError, OSError) as exc:
            detail = redact_text(str(exc)) or type(exc).__name__
            raise StoreError(f"could not {action} {self._where}: {detail}") from exc


async def _close_quietly(pubsub: PubSub) -> None:
    with suppress(Exception):
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
