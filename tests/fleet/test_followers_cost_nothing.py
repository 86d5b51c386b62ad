"""Followers on a real redis-server adopt a generation without a single API request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from cs2cap_account import AccountClient, KeyRotator, RedisKeyStore, RotationEvent
from cs2cap_account.testing import FakeCS2CapAPI

from .conftest import RedisServer

FOLLOWERS = 4
CHILDREN = 3


def _first_into(done: asyncio.Future[RotationEvent]) -> Callable[[RotationEvent], None]:
    """A callback that resolves `done` with the first event it is given."""

    def callback(event: RotationEvent) -> None:
        if not done.done():
            done.set_result(event)

    return callback


async def test_a_followers_adoption_sends_zero_api_requests(
    redis_server: RedisServer, store_name: str
) -> None:
    """A leader rotates and re-creates three child keys; four followers, each with its
    own client and `RedisKeyStore`, adopt the new key and announce it with every child's
    plaintext and metadata, and the fake receives no request from any of them.

    Requests are counted on the fake: everything it received between the followers being
    ready and the last of them announcing is the leader's own rotation.
    """
    async with FakeCS2CapAPI(rate_limits=False) as api, contextlib.AsyncExitStack() as stack:
        for i in range(CHILDREN):
            api.add_child_key(f"child-{i}")
        stores = [RedisKeyStore(redis_server.url, name=store_name) for _ in range(FOLLOWERS + 1)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        leader_client = await stack.enter_async_context(
            AccountClient(api.root_key, base_url=api.base_url)
        )
        leader = KeyRotator(leader_client, store=stores[0], recreate_sub_keys=True)
        await leader.check()  # the store holds the key
        loop = asyncio.get_running_loop()
        announced: list[asyncio.Future[RotationEvent]] = []
        followers = []
        for store in stores[1:]:
            client = await stack.enter_async_context(
                AccountClient(api.root_key, base_url=api.base_url)
            )
            follower = KeyRotator(client, store=store)
            done: asyncio.Future[RotationEvent] = loop.create_future()
            follower.on_rotate(_first_into(done))
            announced.append(done)
            followers.append(await stack.enter_async_context(follower))
        await asyncio.sleep(0.2)  # the followers' first scheduled checks are behind them
        before = sum(api.requests.values())

        rotated = await leader.rotate_now()
        leader_requests = sum(api.requests.values()) - before
        events = await asyncio.wait_for(asyncio.gather(*announced), 10.0)
        await asyncio.sleep(0.2)  # anything a follower would send after announcing

        assert sum(api.requests.values()) - before == leader_requests
        assert leader_requests <= CHILDREN + 4
        assert api.requests["get_sub_key"] == 0
        for follower, event in zip(followers, events, strict=True):
            assert follower.current_key == rotated.new_key
            assert event.reason == "adopted"
            assert set(event.sub_keys) == set(rotated.sub_keys)
            for name, child in event.sub_keys.items():
                assert child.key == rotated.sub_keys[name].key
                assert child.key_info == rotated.sub_keys[name].key_info
