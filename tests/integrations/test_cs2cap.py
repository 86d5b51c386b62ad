"""`follow_rotations` with the official `cs2cap` SDK against the fake API over TCP."""

from __future__ import annotations

import asyncio
import urllib.parse

import cs2cap
import pytest

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore, RotationEvent
from cs2cap_account.integrations.cs2cap import follow_rotations
from cs2cap_account.testing import FakeCS2CapAPI


def _configuration(api: FakeCS2CapAPI) -> cs2cap.Configuration:
    parts = urllib.parse.urlsplit(api.base_url)
    return cs2cap.Configuration(host=f"{parts.scheme}://{parts.netloc}")


@pytest.mark.cs2cap_fake(rate_limits=False)
async def test_one_official_client_keeps_working_across_rotations(
    tcp_fake: FakeCS2CapAPI, tcp_fake_client: AccountClient
) -> None:
    """One official `AccountAPIKeysApi`, made once, busy in a worker thread between three
    rotations: every call succeeds, each batch with the key then in force.
    """
    rotator = KeyRotator(tcp_fake_client, store=MemoryKeyStore())
    configuration = _configuration(tcp_fake)
    follow_rotations(rotator, configuration)
    with cs2cap.ApiClient(configuration) as api_client:
        official = cs2cap.AccountAPIKeysApi(api_client)

        def batch() -> list[int]:
            return [official.list_sub_keys_with_http_info().status_code for _ in range(20)]

        statuses = await asyncio.to_thread(batch)
        for _ in range(3):
            event = await rotator.rotate_now()
            assert configuration.access_token == event.new_key.reveal()
            statuses += await asyncio.to_thread(batch)
    assert statuses == [200] * 80
    assert tcp_fake.reissues == 3


async def test_the_configuration_sends_the_new_key_before_the_callbacks_run(
    fake_client: AccountClient, fake: FakeCS2CapAPI
) -> None:
    """From the instant the rotator switches, the configuration's bearer header is the
    new key: a callback registered first already sees it.
    """
    rotator = KeyRotator(fake_client, store=MemoryKeyStore())
    configuration = cs2cap.Configuration(host="http://127.0.0.1:9")
    seen: list[str] = []

    def check(event: RotationEvent) -> None:
        seen.append(configuration.auth_settings()["BearerAuth"]["value"])

    rotator.on_rotate(check)
    follow_rotations(rotator, configuration)
    event = await rotator.rotate_now()
    assert seen == [f"Bearer {event.new_key.reveal()}"]


def test_follow_rotations_checks_its_arguments(fake_client: AccountClient) -> None:
    """A non-rotator or a non-Configuration is refused with TypeError."""
    with pytest.raises(TypeError, match="needs a KeyRotator"):
        follow_rotations(object(), cs2cap.Configuration())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"cs2cap\.Configuration"):
        follow_rotations(KeyRotator(fake_client), object())  # type: ignore[arg-type]
