"""docs/examples/aiohttp_app.py: handlers keep answering across root-key rotations."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationEvent
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import HeldSaveStore, load_example, sdk_tasks, until

example = load_example("aiohttp_app")


async def get_json(http: TestClient[web.Request, web.Application], path: str) -> Any:
    """GET `path` from the app, insisting on a 200, and return the JSON body."""
    response = await http.get(path)
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_calls_succeed_before_and_after_a_rotation(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """The handler answers with the old key, the attached rotator rotates, and the
    handler answers again, now through the new key; the old one is revoked.
    """
    app = example.create_app(cs2cap_client)
    old_key = cs2cap_client.api_key
    assert old_key is not None
    async with TestClient(TestServer(app)) as http:
        before = await get_json(http, "/key")
        assert before["key_id"] == fake_cs2cap.root_key_id

        event = await app[example.ROTATOR].rotate_now()

        after = await get_json(http, "/key")
        assert after["key_id"] == event.key_id == fake_cs2cap.root_key_id != before["key_id"]
        assert (await get_json(http, "/sub-keys")) == {"sub_keys": []}
    assert not fake_cs2cap.is_active(old_key)
    assert cs2cap_client.api_key == event.new_key
    assert fake_cs2cap.reissues == 1


async def test_concurrent_calls_during_a_rotation_all_succeed(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """Requests keep arriving while the key is rotated. Those whose CS2Cap call was on its
    way with the old key when it was revoked wait for the rotation and are resent: every
    request gets a 200, and those after the rotation report the new key.
    """
    app = example.create_app(cs2cap_client)
    async with TestClient(TestServer(app)) as http:
        rotating = asyncio.create_task(app[example.ROTATOR].rotate_now())
        seen: list[str] = []

        async def keep_asking() -> None:
            while not rotating.done():
                seen.append((await get_json(http, "/key"))["key_id"])

        await asyncio.gather(*(keep_asking() for _ in range(4)))
        event = await rotating
        seen.append((await get_json(http, "/key"))["key_id"])
    assert seen[-1] == event.key_id
    assert set(seen) <= {event.previous_key_id, event.key_id}


async def test_a_call_refused_by_the_reissue_in_flight_is_answered_with_the_new_key(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """A request arrives after the reissue revoked the old key but before the rotator holds
    the new one: its CS2Cap call is refused, waits for the switch, is sent again with the
    new key, and the request gets a 200.
    """
    store = HeldSaveStore()
    app = example.create_app(cs2cap_client, store=store)
    old_key = cs2cap_client.api_key
    async with TestClient(TestServer(app)) as http:
        rotating = asyncio.create_task(app[example.ROTATOR].rotate_now())
        try:
            await asyncio.wait_for(store.holding.wait(), 10)
            assert old_key is not None and not fake_cs2cap.is_active(old_key)
            assert cs2cap_client.api_key == old_key, "the new key is not in use yet"

            # Only /sub-keys lists child keys, so the fake's count follows its call alone.
            asking = asyncio.create_task(get_json(http, "/sub-keys"))
            await until(lambda: fake_cs2cap.requests["list_sub_keys"] == 1)
            assert not asking.done(), "the refused call waits for the new key"
        finally:
            store.release()  # a failure above must not leave the rotation held
        assert await asyncio.wait_for(asking, 10) == {"sub_keys": []}
        event = await rotating
    assert cs2cap_client.api_key == event.new_key
    assert fake_cs2cap.requests["list_sub_keys"] == 2, "refused once, then sent with the new key"


async def test_a_rotation_by_another_process_is_picked_up_from_the_store(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """Another process sharing the store rotates the key; the app's next call gets a 401,
    reloads the new key from the store, and still answers 200.
    """
    store = MemoryKeyStore()
    app = example.create_app(cs2cap_client, store=store)
    async with TestClient(TestServer(app)) as http:
        before = await get_json(http, "/key")
        async with AccountClient(fake_cs2cap.root_key, base_url=fake_cs2cap.base_url) as elsewhere:
            event = await KeyRotator(elsewhere, store=store).rotate_now()

        after = await get_json(http, "/key")
    assert after["key_id"] == event.key_id != before["key_id"]
    assert cs2cap_client.api_key == event.new_key


async def test_the_rotator_runs_only_while_the_app_does(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """The app's startup starts the schedule, which rotates a key past its max age, and
    its cleanup stops it.
    """
    fake_cs2cap.age_root_key(dt.timedelta(days=31))
    app = example.create_app(cs2cap_client)
    rotator: KeyRotator = app[example.ROTATOR]
    rotated: asyncio.Future[RotationEvent] = asyncio.get_running_loop().create_future()
    rotator.on_rotate(rotated.set_result)
    async with TestClient(TestServer(app)) as http:
        event = await asyncio.wait_for(rotated, 10)
        assert event.reason == "max_age"
        assert (await get_json(http, "/key"))["key_id"] == event.key_id
    assert sdk_tasks() == [], "the schedule ended with the app"
    assert fake_cs2cap.reissues == 1
