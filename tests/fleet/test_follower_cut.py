"""A follower whose subscription is cut when the new key is published catches up by polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import AccountClient, KeyRotator, RedisKeyStore, RotationEvent
from cs2cap_account.testing import FakeCS2CapAPI

from ._records import eventually
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

POLL = 0.2
JITTER = 0.1  # RedisKeyStore polls every poll_interval * (1 ± 0.1)
SLACK = 0.15  # the follower's own work after the poll: load, lease, adopt, callback


@pytest.fixture
async def follower_url(redis_server: RedisServer, redis_client: Redis) -> AsyncIterator[str]:
    """A URL logging in as a Redis user of its own, so its channel rights can be revoked."""
    user, password = f"follower-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis_client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"],
        commands=["+@all"],
    )  # fmt: skip
    yield f"redis://{user}:{password}@127.0.0.1:{redis_server.port}/0"
    await redis_client.acl_deluser(user)


async def test_a_follower_cut_off_during_the_publish_catches_up_by_polling(
    api_without_limits: FakeCS2CapAPI,
    redis_server: RedisServer,
    redis_client: Redis,
    follower_url: str,
    store_name: str,
) -> None:
    """The follower runs its rotator (`poll_interval` 0.2 s). Revoking its Redis user's
    channel rights makes Redis drop its subscription and refuse a new one, so the leader's
    publish of the new generation reaches nobody. The follower still switches to the new
    key within one poll interval plus jitter (and a little slack for its own work), and
    announces it once; once allowed again, it subscribes again.
    """
    api = api_without_limits
    channel = f"{{{store_name}}}:changes"
    leader_store = RedisKeyStore(redis_server.url, name=store_name)
    follower_store = RedisKeyStore(follower_url, name=store_name, poll_interval=POLL)
    leader_client = AccountClient(api.root_key, base_url=api.base_url)
    follower_client = AccountClient(api.root_key, base_url=api.base_url)
    leader = KeyRotator(leader_client, store=leader_store)
    follower = KeyRotator(follower_client, store=follower_store)
    announced: list[RotationEvent] = []
    follower.on_rotate(announced.append)

    async def subscribers(count: int) -> bool:
        return dict(await redis_client.pubsub_numsub(channel)).get(channel.encode()) == count

    try:
        await leader.check()
        follower.start()
        await eventually(lambda: subscribers(1))
        user = follower_url.split("//")[1].split(":", maxsplit=1)[0]
        await acl_setuser(redis_client, user, "resetchannels")
        await eventually(lambda: subscribers(0))

        started = time.monotonic()
        event = await leader.rotate_now()

        async def switched() -> bool:
            return follower.current_key == event.new_key

        took = await eventually(switched, bound=5.0, every=0.005)
        elapsed = time.monotonic() - started
        assert await subscribers(0)  # it was the poll, not a message
        assert elapsed <= POLL * (1 + JITTER) + SLACK, (took, elapsed)
        await eventually(lambda: _length_is(announced, 1))
        assert [(e.generation, e.reason) for e in announced] == [(2, "adopted")]
        assert (await follower_client.get_key()).id == event.key_id

        await acl_setuser(redis_client, user, "allchannels")
        await eventually(lambda: subscribers(1), bound=5.0)
    finally:
        await follower.stop()
        await leader.stop()
        for client in (leader_client, follower_client):
            await client.aclose()
        for store in (leader_store, follower_store):
            await store.aclose()


async def acl_setuser(redis: Redis, user: str, rule: str) -> None:
    """Apply one ACL rule to `user`, leaving the rest of the user as it is."""
    await redis.execute_command("ACL", "SETUSER", user, rule)  # type: ignore[no-untyped-call]


async def _length_is(items: list[RotationEvent], length: int) -> bool:
    await asyncio.sleep(0)
    return len(items) == length


@pytest.fixture
async def api_without_limits() -> AsyncIterator[FakeCS2CapAPI]:
    """The fake API, without rate limits."""
    async with FakeCS2CapAPI(rate_limits=False) as fake:
        yield fake
