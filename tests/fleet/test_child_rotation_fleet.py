"""A fleet on a real redis-server rotates each due child key once, and follows for free."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import Counter

from cs2cap_account import (
    AccountClient,
    ChildRotationEvent,
    FakeClock,
    KeyRotator,
    RedisKeyStore,
)
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import RedisServer

FLEET_SIZE = 8
CHILDREN = ("bot", "ci", "partner")
WEEK = dt.timedelta(days=7)


async def test_eight_rotators_sharing_redis_rotate_each_due_child_exactly_once(
    redis_server: RedisServer, store_name: str
) -> None:
    """Three children in the store, all older than `child_max_age`; eight rotators, each
    with its own client and `RedisKeyStore`, check at once. The lease lets one rotation
    per child: each child is reissued exactly once through its own route, the root never;
    the store holds every new child with no journal left open; and every rotator, after
    its next look, knows the same child keys, each told to it exactly once.
    """
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    async with (
        FakeCS2CapAPI(rate_limits=False, clock=clock.monotonic, wall_clock=clock.now) as api,
        contextlib.AsyncExitStack() as stack,
    ):
        for name in CHILDREN:
            api.add_child_key(name)
        stores = [RedisKeyStore(redis_server.url, name=store_name) for _ in range(FLEET_SIZE)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        first = await stack.enter_async_context(
            AccountClient(api.root_key, base_url=api.base_url, clock=clock)
        )
        await KeyRotator(first, store=stores[0], recreate_sub_keys=True).rotate_now()
        before = await stores[0].load()
        assert before is not None and set(before.sub_keys) == set(CHILDREN)
        root_reissues = api.reissues
        clock.advance(8 * 86_400)

        rotators: list[KeyRotator] = []
        told: list[Counter[str]] = []
        for store in stores:
            client = await stack.enter_async_context(
                AccountClient(api.root_key, base_url=api.base_url, clock=clock)
            )
            rotator = KeyRotator(client, store=store, child_max_age=WEEK)
            seen: Counter[str] = Counter()

            def tell(event: ChildRotationEvent, seen: Counter[str] = seen) -> None:
                seen[event.name] += 1

            rotator.on_child_rotate(tell)
            rotators.append(rotator)
            told.append(seen)
        await asyncio.gather(*(rotator.check() for rotator in rotators))
        await asyncio.gather(*(rotator.check() for rotator in rotators))  # the others adopt

        after = await stores[0].load()
        assert after is not None
        assert dict(api.child_reissues) == dict.fromkeys(CHILDREN, 1)
        assert api.reissues == root_reissues
        assert (after.generation, after.key_id) == (before.generation, before.key_id)
        assert after.child_rotations == {}
        for name in CHILDREN:
            assert after.sub_keys[name].id != before.sub_keys[name].id
            assert after.sub_keys[name].generation == before.sub_keys[name].generation + 1
            assert api.is_active(after.sub_keys[name].key)
        stored_keys = {name: entry.key for name, entry in after.sub_keys.items()}
        for rotator, seen in zip(rotators, told, strict=True):
            assert dict(rotator.child_keys) == stored_keys
            assert seen == Counter(dict.fromkeys(CHILDREN, 1))


async def test_followers_adopt_a_child_rotated_elsewhere_with_zero_api_requests(
    redis_server: RedisServer, store_name: str
) -> None:
    """A leader rotates one child; four running followers learn of it from the store's
    change feed (a child rotation keeps the generation), announce it with its key and
    generation, and the fake receives no request from any of them.
    """
    async with FakeCS2CapAPI(rate_limits=False) as api, contextlib.AsyncExitStack() as stack:
        for name in CHILDREN:
            api.add_child_key(name)
        stores = [RedisKeyStore(redis_server.url, name=store_name) for _ in range(5)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        leader_client = await stack.enter_async_context(
            AccountClient(api.root_key, base_url=api.base_url)
        )
        leader = KeyRotator(leader_client, store=stores[0], recreate_sub_keys=True)
        await leader.rotate_now()
        loop = asyncio.get_running_loop()
        announced: list[asyncio.Future[ChildRotationEvent]] = []
        followers = []
        for store in stores[1:]:
            client = await stack.enter_async_context(
                AccountClient(api.root_key, base_url=api.base_url)
            )
            follower = KeyRotator(client, store=store)
            done: asyncio.Future[ChildRotationEvent] = loop.create_future()
            follower.on_child_rotate(
                lambda event, done=done: done.done() or done.set_result(event)  # type: ignore[misc]
            )
            announced.append(done)
            followers.append(await stack.enter_async_context(follower))
        await asyncio.sleep(0.2)  # the followers' first scheduled checks are behind them
        before = sum(api.requests.values())

        rotated = await leader.rotate_child_now("ci")
        leader_requests = sum(api.requests.values()) - before
        events = await asyncio.wait_for(asyncio.gather(*announced), 10.0)
        await asyncio.sleep(0.2)  # anything a follower would send after announcing

        assert sum(api.requests.values()) - before == leader_requests
        assert api.child_reissues == {"ci": 1}
        for follower, event in zip(followers, events, strict=True):
            assert (event.name, event.key_id, event.reason) == ("ci", rotated.key_id, "adopted")
            assert event.new_key == rotated.new_key
            assert event.generation == rotated.generation == 2
            assert event.previous_key_id == rotated.previous_key_id
            assert follower.child_keys["ci"] == rotated.new_key
