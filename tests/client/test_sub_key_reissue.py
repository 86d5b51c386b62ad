"""`sub_keys.reissue()` with the root reissue's safety, against the fake API.

A child reissue replaces one child and leaves the root and every other child alone. It is
never blindly repeated: after a failure once sent, the old child is probed with the root
key, and a lost response is mended with the root key alone (`sub_keys.recover()`).
"""

from __future__ import annotations

import pytest

from cs2cap_account import (
    AccountClient,
    FakeClock,
    Hooks,
    RequestEvent,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account.testing import FakeCS2CapAPI

FAKE_BASE_URL = "https://fake.test/v1"  # any: the in-process transport has no socket


async def test_a_reissue_dropped_before_it_acted_is_sent_again_once(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """The connection drops before the server acts: the old child is still active, so the
    reissue is sent again; one new child, the old one revoked, the root and the other
    child untouched.
    """
    bot = fake.add_child_key("bot")
    ci = fake.add_child_key("ci")
    root = fake.root_key
    fake.faults.drop("reissue_sub_key")

    made = await fake_client.sub_keys.reissue(bot.key_id)

    assert fake.requests["reissue_sub_key"] == 2
    assert fake.is_active(made.key)
    assert made.key_info.name == "bot"
    assert not fake.is_active(bot.key)
    assert fake.is_active(ci.key)
    assert fake.is_active(root)
    assert fake.reissues == 0


async def test_a_lost_response_is_recovered_with_the_root_key_alone(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """The reissue acts and its response is lost: `SubKeyLostError` names the old child;
    `recover()` finds the child the reissue made (same name, created after) and reissues
    it. The recovered key works, the lost one is revoked, no session token is used, the
    root and the other child keep working.
    """
    bot = fake.add_child_key("bot", rate_requests_per_minute_override=30)
    ci = fake.add_child_key("ci")
    fake.faults.drop_after_commit("reissue_sub_key")

    with pytest.raises(SubKeyLostError) as caught:
        await fake_client.sub_keys.reissue(bot.key_id)
    assert (caught.value.previous_key_id, caught.value.name) == (bot.key_id, "bot")
    assert fake.requests["reissue_sub_key"] == 1  # not repeated

    recovered = await fake_client.sub_keys.recover(caught.value)

    assert fake.is_active(recovered.key)
    assert recovered.key_info.name == "bot"
    assert recovered.key_info.rate_requests_per_minute_override == 30
    bots = [
        detail.key async for detail in fake_client.sub_keys.iterate() if detail.key.name == "bot"
    ]
    assert [k.id for k in bots] == [recovered.key_info.id]  # the lost one is revoked too
    assert fake.is_active(ci.key)
    assert fake.is_active(fake_client.api_key or "")
    assert fake.reissues == 0
    assert fake.requests["reissue_sub_key"] == 2


async def test_a_probe_without_an_answer_makes_the_outcome_unknown(
    fake: FakeCS2CapAPI, clock: FakeClock
) -> None:
    """The reissue's response is lost and every probe of the old child gets 503: nothing
    proves either way, so `SubKeyOutcomeUnknownError`, and nothing is sent again.
    """
    bot = fake.add_child_key("bot")
    fake.faults.drop_after_commit("reissue_sub_key")

    def probes_fail(event: RequestEvent) -> None:
        if event.method == "POST":  # the reissue is going out: what follows is the probe
            fake.faults.fail("get_sub_key", status=503, code="SERVICE_UNAVAILABLE", times=10)

    async with AccountClient(
        fake.root_key,
        base_url=FAKE_BASE_URL,
        transport=fake.transport(clock=clock),
        clock=clock,
        hooks=Hooks(on_request=[probes_fail]),
    ) as watched:
        with pytest.raises(SubKeyOutcomeUnknownError) as caught:
            await watched.sub_keys.reissue(bot.key_id)

    assert fake.requests["reissue_sub_key"] == 1
    assert "get the child key to check" in str(caught.value)


async def test_recover_reissues_nothing_when_it_cannot_tell_which_child(
    fake: FakeCS2CapAPI, fake_client: AccountClient
) -> None:
    """Two active children named like the lost one, both created after it: which one the
    lost reissue made is unknown, so `recover()` reissues neither and says so.
    """
    bot = fake.add_child_key("bot")
    fake.faults.drop_after_commit("reissue_sub_key")
    with pytest.raises(SubKeyLostError) as caught:
        await fake_client.sub_keys.reissue(bot.key_id)
    fake.add_child_key("bot")

    with pytest.raises(SubKeyOutcomeUnknownError, match="2 \\("):
        await fake_client.sub_keys.recover(caught.value)

    assert fake.requests["reissue_sub_key"] == 1


async def test_recover_takes_only_a_lost_child_reissue(fake_client: AccountClient) -> None:
    """Anything but a `SubKeyLostError` is a `TypeError`."""
    with pytest.raises(TypeError, match="SubKeyLostError"):
        await fake_client.sub_keys.recover(ValueError("x"))  # type: ignore[arg-type]
