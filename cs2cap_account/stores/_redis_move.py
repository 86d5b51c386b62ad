"""Moving a Redis store written before the hash tag (`<name>:record`) to `{name}:record`.

Versions before the hash tag kept the record in `<name>:record` and the lease in
`<name>:lease`. A store of this version that finds its own record hash empty looks there,
once per load of an empty store, and moves what it finds:

1. it takes the old lease (`SET NX PX`, as older versions take it), so no rotation of an
   older version is in flight while the record moves; held, the move waits
   (`StoreError`: the rotator tries again at its next look);
2. it marks the old hash moving (`_MARK`): its `generation` becomes `MOVING`, an integer
   far above any real one, so that an older version's compare-and-set is fenced off
   (its new key held in memory, never dropped) and its load refuses the record as
   inconsistent; the original generation is kept beside it;
3. it copies the record into the new hash, only if that is empty (`_COPY`);
4. it drops the old record, leaving only the `MOVED` marker (`_DROP`), and releases the
   old lease.

A crash between 2 and 4 loses nothing: the old hash still holds the record, marked, and
the next empty-store load copies it again. Each store also finishes an interrupted move
(step 4) on its first load of a non-empty store, so a marked record is not left to be
copied back over a store emptied much later.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["MOVED", "MOVING", "finish_interrupted_move", "move_before_hash_tag"]

Call = Callable[[str, Awaitable[Any]], Awaitable[Any]]

logger: Final = logging.getLogger("cs2cap_account.stores")

# Generations no real store reaches: older versions parse them as integers, and fence.
MOVING: Final = "9000000000000000001"
MOVED: Final = "9000000000000000002"

# KEYS[1] the old record hash. ARGV[1] MOVING. Returns {generation, lineage, record} as
# they were before the move began (the record still there), or {} if none is left.
_MARK: Final = """
local f = redis.call('HMGET', KEYS[1], 'generation', 'lineage', 'record', 'moved_from')
if not f[1] or not f[3] then return {} end
if f[1] ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'moved_from', f[1])
  f[4] = f[1]
end
return {f[4], f[2] or '', f[3]}
"""

# KEYS[1] the new record hash. ARGV: generation, lineage, record. Only into an empty hash.
_COPY: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'lineage', ARGV[2], 'record', ARGV[3])
return 1
"""

# KEYS[1] the old record hash. ARGV: MOVING, MOVED. A moving record is dropped: only the
# MOVED marker stays. 1 if it was.
_DROP: Final = """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[2])
redis.call('HDEL', KEYS[1], 'lineage', 'record', 'moved_from')
return 1
"""

# KEYS[1] the old lease. ARGV[1] our token. Compare-and-delete, as older versions did.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def move_before_hash_tag(
    client: Redis | RedisCluster,
    call: Call,
    *,
    name: str,
    record_key: str,
    lease_ttl: float,
    where: str,
) -> bool:
    """Move `<name>:record` into `record_key` if there is one; True if a record moved.

    `call(action, command)` bounds and translates each command (the store's `_call`).
    """
    from cs2cap_account.errors import StoreError

    old_record, old_lease = f"{name}:record", f"{name}:lease"
    if not await call("read", client.hexists(old_record, "record")):
        return False
    token = secrets.token_hex(16)
    ttl_ms = max(1, round(lease_ttl * 1000))
    taken = await call(
        "take the old rotation lease of", client.set(old_lease, token, nx=True, px=ttl_ms)
    )
    if not taken:
        raise StoreError(
            f"{where} was written by an older version of cs2cap-account, which holds its "
            "rotation lease; the record is moved once that is released"
        )
    try:
        fields = await call("write", client.eval(_MARK, 1, old_record, MOVING))
        if not fields:
            return False
        generation, lineage, data = fields
        await call("write", client.eval(_COPY, 1, record_key, generation, lineage, data))
        await call("write", client.eval(_DROP, 1, old_record, MOVING, MOVED))
    finally:
        await call("release the old rotation lease of", client.eval(_RELEASE, 1, old_lease, token))
    logger.warning(
        "moved the record of %s from %r to %r (generation %s); rotators of versions before "
        "the move can no longer read or write it: upgrade them",
        where,
        old_record,
        record_key,
        generation.decode() if isinstance(generation, bytes) else generation,
    )
    return True


async def finish_interrupted_move(client: Redis | RedisCluster, call: Call, *, name: str) -> None:
    """Drop an old record left marked moving by a move interrupted before its last step."""
    if await call("write", client.eval(_DROP, 1, f"{name}:record", MOVING, MOVED)):
        logger.warning("finished moving the record %r of an earlier interrupted move", name)
