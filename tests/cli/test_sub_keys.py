"""`cs2cap-account sub-keys ...`: each command in text and in JSON, run side by side."""

from __future__ import annotations

import asyncio
import datetime as dt

from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Result, assert_no_plaintext, env_for, run


async def both(api: FakeCS2CapAPI, text_args: list[str], json_args: list[str]) -> list[Result]:
    """Run a text and a `--json` command at the same time; both must succeed."""
    env = env_for(api)
    results = await asyncio.gather(run(*text_args, env=env), run(*json_args, "--json", env=env))
    for result in results:
        assert result.status == 0, result.stderr
        assert result.stderr == ""
    return list(results)


async def test_list_shows_every_child_key_with_its_overrides(fake_cs2cap: FakeCS2CapAPI) -> None:
    """A table marking overrides with `*`, and JSON with every child's KeyInfo."""
    fake_cs2cap.add_child_key("market-bot", rate_requests_per_minute_override=60)
    fake_cs2cap.add_child_key("dashboard", quota_requests_per_month_override=5_000)
    text, as_json = await both(fake_cs2cap, ["sub-keys", "list"], ["sub-keys", "list"])
    header, *rows, footnote = text.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "RATE/MIN", "QUOTA/MONTH", "USED", "CREATED"]
    assert [row.split()[1:4] for row in rows] == [
        ["market-bot", "60*", "1,000,000"],
        ["dashboard", "300", "5,000*"],
    ]
    assert footnote == "* an override of the tier's default"
    data = as_json.json()
    assert data["total"] == 2
    names = [entry["key_info"]["name"] for entry in data["keys"]]
    assert names == ["market-bot", "dashboard"]
    assert data["keys"][0]["key_info"]["rate_requests_per_minute_override"] == 60
    assert data["keys"][1]["requests_this_month"] == 0
    assert dt.datetime.fromisoformat(data["keys"][0]["key_info"]["created_at"]).tzinfo
    for result in (text, as_json):
        assert_no_plaintext(result, fake_cs2cap)


async def test_get_shows_one_child_key_and_its_usage(fake_cs2cap: FakeCS2CapAPI) -> None:
    """Metadata and this month's request count, never the key itself."""
    bot = fake_cs2cap.add_child_key("market-bot", rate_requests_per_minute_override=60)
    fake_cs2cap.record_usage(bot.key_id, 42)
    text, as_json = await both(
        fake_cs2cap, ["sub-keys", "get", bot.key_id], ["sub-keys", "get", bot.key_id]
    )
    assert text.stdout.startswith(f"Child key {bot.key_id}\n")
    assert "name             market-bot" in text.stdout
    assert "60 requests/minute (override)" in text.stdout
    assert "used this month  42 requests" in text.stdout
    data = as_json.json()
    assert set(data) == {"key_info", "requests_this_month"}
    assert (data["key_info"]["id"], data["requests_this_month"]) == (bot.key_id, 42)
    for result in (text, as_json):
        assert_no_plaintext(result, fake_cs2cap)


async def test_create_prints_the_new_child_key_once(fake_cs2cap: FakeCS2CapAPI) -> None:
    """The new key is printed once (in JSON, as `key`) and works; overrides are sent."""
    text, as_json = await both(
        fake_cs2cap,
        ["sub-keys", "create", "--name", "bot", "--rate-override", "30"],
        ["sub-keys", "create", "--name", "board", "--quota-override", "100"],
    )
    text_key = text.stdout.splitlines()[-1]
    assert "shown this once" in text.stdout.splitlines()[-2]
    assert fake_cs2cap.is_active(text_key)
    assert "30 requests/minute (override)" in text.stdout
    data = as_json.json()
    assert fake_cs2cap.is_active(data["key"])
    assert data["key_info"]["name"] == "board"
    assert data["key_info"]["quota_requests_per_month_override"] == 100
    assert data["key_redacted"].endswith(data["key"][-4:])
    assert_no_plaintext(text, fake_cs2cap, shown_once=[text_key])
    assert_no_plaintext(as_json, fake_cs2cap, shown_once=[data["key"]])


async def test_update_changes_and_clears_overrides(fake_cs2cap: FakeCS2CapAPI) -> None:
    """`--clear-*` sends null (the override is gone); other options set values."""
    bot = fake_cs2cap.add_child_key("bot", rate_requests_per_minute_override=60)
    board = fake_cs2cap.add_child_key("board", quota_requests_per_month_override=5_000)
    text, as_json = await both(
        fake_cs2cap,
        ["sub-keys", "update", bot.key_id, "--name", "bot2", "--clear-rate-override",
         "--quota-override", "777"],
        ["sub-keys", "update", board.key_id, "--clear-quota-override", "--rate-override", "10"],
    )  # fmt: skip
    assert text.stdout.startswith(f"Updated child key {bot.key_id}\n")
    assert "name             bot2" in text.stdout
    assert "777 requests/month (override)" in text.stdout
    after = fake_cs2cap.key_info(bot.key_id)
    assert (after["name"], after["rate_requests_per_minute_override"]) == ("bot2", None)
    assert after["quota_requests_per_month_override"] == 777
    data = as_json.json()
    assert data["key_info"]["quota_requests_per_month_override"] is None
    assert data["key_info"]["rate_requests_per_minute_override"] == 10
    assert fake_cs2cap.key_info(board.key_id)["quota_requests_per_month_override"] is None
    for result in (text, as_json):
        assert_no_plaintext(result, fake_cs2cap)


async def test_reissue_replaces_a_child_key_and_prints_the_new_one_once(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """The old child key stops working; the new one is printed once and works."""
    bot = fake_cs2cap.add_child_key("bot")
    board = fake_cs2cap.add_child_key("board")
    text, as_json = await both(
        fake_cs2cap, ["sub-keys", "reissue", bot.key_id], ["sub-keys", "reissue", board.key_id]
    )
    assert not fake_cs2cap.is_active(bot.key)
    assert not fake_cs2cap.is_active(board.key)
    text_key = text.stdout.splitlines()[-1]
    assert fake_cs2cap.is_active(text_key)
    assert f"Reissued child key {bot.key_id} (now revoked) as child key" in text.stdout
    data = as_json.json()
    assert fake_cs2cap.is_active(data["key"])
    assert data["key_info"]["name"] == "board"
    assert_no_plaintext(text, fake_cs2cap, shown_once=[text_key])
    assert_no_plaintext(as_json, fake_cs2cap, shown_once=[data["key"]])


async def test_a_lost_reissue_response_is_recovered_and_the_key_printed_once(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """The reissue acts and its response is lost: the command recovers with the root key
    (reissuing the child the lost reissue made), exits 0 and prints a key that works;
    only one child of that name is left, and the root was never reissued.
    """
    bot = fake_cs2cap.add_child_key("bot")
    fake_cs2cap.faults.drop_after_commit("reissue_sub_key")

    result = await run("sub-keys", "reissue", bot.key_id, env=env_for(fake_cs2cap))

    assert result.status == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert fake_cs2cap.is_active(key)
    assert "recovering" in result.stderr
    assert fake_cs2cap.requests["reissue_sub_key"] == 2
    assert fake_cs2cap.reissues == 0
    assert_no_plaintext(result, fake_cs2cap, shown_once=[key])


async def test_delete_revokes_a_child_key(fake_cs2cap: FakeCS2CapAPI) -> None:
    """Both keys stop working; JSON carries `ok`, the id and an ISO `revoked_at`."""
    bot = fake_cs2cap.add_child_key("bot")
    board = fake_cs2cap.add_child_key("board")
    text, as_json = await both(
        fake_cs2cap, ["sub-keys", "delete", bot.key_id], ["sub-keys", "delete", board.key_id]
    )
    assert text.stdout.startswith(f"Revoked child key {bot.key_id} (")
    data = as_json.json()
    assert (data["ok"], data["key_id"]) == (True, board.key_id)
    assert dt.datetime.fromisoformat(data["revoked_at"]).tzinfo is not None
    assert not fake_cs2cap.is_active(bot.key)
    assert not fake_cs2cap.is_active(board.key)
