"""Child keys on their own schedule from the command line: `rotate --child-max-age`,
its `--dry-run`, and `sub-keys reissue ID --store`, each a real subprocess against a
fake served by the test's own loop. The root key is never reissued by any of them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import attrs
import pytest

from cs2cap_account import AccountClient, FileKeyStore, KeyRecord
from cs2cap_account.cli import ExitStatus, main
from cs2cap_account.stores._record import PendingChildRotation, StoredSubKey
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import assert_no_plaintext, env_for, run
from .test_rotate import redis_url  # noqa: F401 - the fixture, found here by its name

WEEK = ("--child-max-age", "7d")
# Past --child-max-age 7d by more than a day, however the seconds fall.
EIGHT_DAYS = dt.timedelta(days=8, hours=12)


async def stored(path: Path) -> KeyRecord:
    """The record in the key file at `path`."""
    record = await FileKeyStore(path).load()
    assert record is not None
    return record


async def store_root(api: FakeCS2CapAPI, path: Path) -> KeyRecord:
    """`rotate --once` with a fresh root key: the file holds it as generation 1."""
    result = await run(
        "rotate", "--once", "--max-age", "30d", "--store", str(path), env=env_for(api)
    )
    assert result.status == 0, result.stderr
    assert api.reissues == 0
    return await stored(path)


async def store_aged_child(api: FakeCS2CapAPI, path: Path, name: str) -> StoredSubKey:
    """A child `name` eight days old, kept in the file as if it had been for that long.

    Its age is moved back at the server and in the metadata stored with it alike, as
    eight days of time would move both.
    """
    child = api.add_child_key(name)
    api.age_child_key(child.key_id, EIGHT_DAYS)
    async with AccountClient(api.root_key, base_url=api.base_url) as client:
        info = (await client.sub_keys.get(child.key_id)).key
    record = await stored(path)
    entry = StoredSubKey(key=child.key, id=child.key_id, info=info)
    kept = attrs.evolve(record, sub_keys={**record.sub_keys, name: entry})
    await FileKeyStore(path).save(kept, expected_generation=record.generation)
    return entry


# -- rotate --child-max-age ------------------------------------------------------------


async def test_rotate_once_reissues_the_named_aged_child_and_nothing_else(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """`--child bot` with bot eight days old: one check reissues bot alone, through its
    own route (one child reissue, no root reissue), saves its new key under its name and
    prints one line with both ids; ci, as old but not named, and the root key stay.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    bot = api.add_child_key("bot")
    ci = api.add_child_key("ci")
    api.age_child_key(bot.key_id, EIGHT_DAYS)
    api.age_child_key(ci.key_id, EIGHT_DAYS)
    root_id = api.root_key_id

    args = ("rotate", "--once", "--max-age", "30d", *WEEK, "--child", "bot", "--store", str(path))
    result = await run(*args, env=env_for(api))

    assert result.status == 0, result.stderr
    assert dict(api.child_reissues) == {"bot": 1}
    assert api.reissues == 0
    assert api.root_key_id == root_id
    record = await stored(path)
    assert (record.generation, record.key_id) == (1, root_id)
    assert list(record.sub_keys) == ["bot"]
    new = record.sub_keys["bot"]
    assert (new.generation, record.child_rotations) == (1, {})
    assert api.is_active(new.key) and api.is_active(ci.key) and api.is_active(record.key)
    assert not api.is_active(bot.key)
    assert (
        f"rotated the child key bot {bot.key_id} -> {new.id} (generation 1, reason max_age); "
        f"new key {new.key} saved in FileKeyStore('{path}')"
    ) in result.stdout
    assert f"Root key {root_id} is not due for rotation" in result.stdout
    assert "No child key was rotated" not in result.stdout
    assert_no_plaintext(result, api)


async def test_rotate_without_child_manages_every_stored_child_as_json(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """No `--child`: the children the store records are managed, and only they. The aged
    stored one is rotated (generation 2, one JSON line with its ids); a second check has
    nothing due and says so. An aged child the store does not hold is left alone.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await store_root(api, path)
    old = await store_aged_child(api, path, "board")
    stray = api.add_child_key("stray")
    api.age_child_key(stray.key_id, EIGHT_DAYS)
    args = ("rotate", "--once", *WEEK, "--store", str(path), "--log-format", "json")

    first = await run(*args, env=env_for(api, use_root_key=False))
    second = await run(*args, env=env_for(api, use_root_key=False))

    for result in (first, second):
        assert result.status == 0, result.stderr
        assert_no_plaintext(result, api)
    assert dict(api.child_reissues) == {"board": 1}
    assert api.reissues == 0
    new = (await stored(path)).sub_keys["board"]
    events = [json.loads(line) for line in first.stdout.splitlines()]
    [rotated] = [e for e in events if e["event"] == "child_rotated"]
    assert rotated == {
        "event": "child_rotated",
        "name": "board",
        "reason": "max_age",
        "key_id": new.id,
        "previous_key_id": old.id,
        "generation": 2,
        "rotated_at": rotated["rotated_at"],
        "new_key": new.key.redacted,
    }
    assert [e["event"] for e in events] == ["child_rotated", "not_due"]
    assert [json.loads(line)["event"] for line in second.stdout.splitlines()] == [
        "not_due",
        "children_not_due",
    ]
    assert api.is_active(stray.key)


async def test_rotate_once_exits_7_when_a_child_rotation_fails(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """The child's reissue is refused (503 on every attempt): nothing is revoked, the
    check still ends, and `--once` exits with the rotation status on one error line.
    """
    api = fake_cs2cap
    bot = api.add_child_key("bot")
    api.age_child_key(bot.key_id, EIGHT_DAYS)
    api.faults.fail("reissue_sub_key", times=10)
    path = tmp_path / "key.json"

    result = await run(
        "rotate", "--once", *WEEK, "--child", "bot", "--store", str(path), "--max-retries", "0",
        env=env_for(api),
    )  # fmt: skip

    assert result.status == ExitStatus.ROTATION, result.output
    last = result.stderr.splitlines()[-1]
    assert last.startswith("cs2cap-account: error: 1 child key rotation(s) did not complete")
    assert "nothing was revoked" in last
    assert api.child_reissues == {} and api.reissues == 0
    assert api.is_active(bot.key)
    assert (await stored(path)).child_rotations == {}
    assert_no_plaintext(result, api)


# -- rotate --dry-run --child-max-age --------------------------------------------------


async def test_dry_run_names_the_due_children_and_reissues_nothing(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """The dry run judges a stored child by its stored metadata and a named one the store
    does not hold by the listing: the aged ones would rotate, the fresh one not, a name
    no child has is said to be missing. Nothing is reissued and the file is unchanged;
    as JSON, `children_to_rotate` names the due ones.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    record = await store_root(api, path)
    board = await store_aged_child(api, path, "board")
    bot = api.add_child_key("bot")
    api.age_child_key(bot.key_id, EIGHT_DAYS)
    ci = api.add_child_key("ci")
    before = path.read_bytes()
    requests = api.requests.copy()
    names = ("--child", "board", "--child", "bot", "--child", "ci", "--child", "gone")
    args = ("rotate", "--dry-run", "--max-age", "30d", *WEEK, *names, "--store", str(path))
    env = env_for(api, use_root_key=False)

    text = await run(*args, env=env)
    as_json = await run(*args, "--log-format", "json", env=env)

    for result in (text, as_json):
        assert result.status == 0, result.stderr
        assert_no_plaintext(result, api)
    lines = text.stdout.splitlines()
    assert lines[0].startswith("Dry run: a check would not rotate; root key")
    assert lines[1].startswith(
        f"Dry run: a check would rotate the child key board ({board.id}) now (max_age): created "
    )
    assert "(8 days ago), due " in lines[1] and "(1 day ago)." in lines[1]
    assert lines[2].startswith(
        f"Dry run: a check would rotate the child key bot ({bot.key_id}, not in the store "
        "yet) now (max_age)"
    )
    assert lines[3].startswith(
        f"Dry run: the child key ci ({ci.key_id}, not in the store yet) is not due: created "
    )
    # Judged by the listing's `Date`, whole seconds: a child made this second is due in 7
    # days by it, or in 6 days and some hours once that second has passed.
    assert lines[3].endswith(("(in 6 days).", "(in 7 days)."))
    assert lines[4] == (
        "Dry run: child key gone: no active child key has this name; nothing to rotate."
    )
    verdict = as_json.json()
    assert verdict["key_id"] == record.key_id and verdict["would_rotate"] is False
    assert verdict["children_to_rotate"] == ["board", "bot"]
    by_name = {entry["name"]: entry for entry in verdict["children"]}
    assert [by_name[n]["action"] for n in ("board", "bot", "ci", "gone")] == [
        "rotate",
        "rotate",
        "not_due",
        "none",
    ]
    assert (by_name["board"]["stored"], by_name["bot"]["stored"]) == (True, False)
    assert by_name["bot"]["key_id"] == bot.key_id
    assert api.child_reissues == {} and api.reissues == 0
    assert api.requests["reissue_sub_key"] == requests["reissue_sub_key"]
    assert path.read_bytes() == before, "--dry-run writes nothing"


async def test_dry_run_says_the_root_key_comes_first_and_when_none_is_managed(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A root key past --max-age: the due stored child waits for it (a root rotation
    revokes every child). A store with no children and no --child: none is managed.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    empty = tmp_path / "empty.json"
    await store_root(api, path)
    await store_root(api, empty)
    board = await store_aged_child(api, path, "board")
    env = env_for(api, use_root_key=False)
    api.age_root_key(dt.timedelta(days=31))

    due_root = await run(
        "rotate", "--dry-run", "--max-age", "30d", *WEEK, "--store", str(path), env=env
    )
    unmanaged = await run("rotate", "--dry-run", *WEEK, "--store", str(empty), env=env)

    for result in (due_root, unmanaged):
        assert result.status == 0, result.stderr
        assert_no_plaintext(result, api)
    first, child = due_root.stdout.splitlines()
    assert "a check would rotate the root key now (max_age)" in first
    assert child.startswith(f"Dry run: the child key board ({board.id}) is due (created ")
    assert child.endswith("but the root key comes first in this check; a child is rotated on "
                          "its own only while the root key is not.")  # fmt: skip
    assert unmanaged.stdout.splitlines()[1] == (
        "Dry run: no child key is managed: the store records none (name them with --child)."
    )
    assert api.child_reissues == {} and api.reissues == 0


# -- usage -----------------------------------------------------------------------------


def test_child_without_child_max_age_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--child` alone would rotate nothing: status 2 and one line, with or without
    --dry-run, before the store or the API is touched (the API here is a closed port).
    A name that is blank is refused the same way.
    """
    monkeypatch.setenv("CS2C_API_KEY", "sk_live_root_" + "k" * 32)
    monkeypatch.setenv("CS2C_API_BASE", "http://127.0.0.1:9/v1")
    path = tmp_path / "key.json"
    store = ("--store", str(path))
    cases = [
        ("give it too", ["rotate", "--once", "--max-age", "30d", "--child", "bot", *store]),
        ("give it too", ["rotate", "--dry-run", "--max-age", "30d", "--child", "bot", *store]),
        ("--child must be a child key's name, not empty",
         ["rotate", "--once", *WEEK, "--child", " ", *store]),
        ("needs --max-age, --before-expiry or --child-max-age", ["rotate", "--once", *store]),
    ]  # fmt: skip
    for message, args in cases:
        assert main(args) == ExitStatus.USAGE, args
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert message in err
    assert not path.exists()


# -- sub-keys reissue --store ----------------------------------------------------------


async def test_sub_keys_reissue_with_a_store_saves_the_child_under_its_name(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """An empty file and CS2C_API_KEY: the root key is recorded as generation 1 and the
    child's new key saved under its name (generation 1), shown redacted only; run again
    on the new id, the child moves to generation 2. JSON says the same. One child reissue
    per run, no root reissue.
    """
    api = fake_cs2cap
    path, other = tmp_path / "key.json", tmp_path / "other.json"
    bot = api.add_child_key("bot", rate_requests_per_minute_override=60)
    board = api.add_child_key("board")
    root_id = api.root_key_id

    text, as_json = (
        await run("sub-keys", "reissue", bot.key_id, "--store", str(path), env=env_for(api)),
        await run("sub-keys", "reissue", board.key_id, "--store", str(other), "--json",
                  env=env_for(api)),
    )  # fmt: skip

    for result in (text, as_json):
        assert result.status == 0, result.stderr
        assert_no_plaintext(result, api)
    assert dict(api.child_reissues) == {"bot": 1, "board": 1}
    assert api.reissues == 0
    record = await stored(path)
    assert (record.generation, record.key_id, list(record.sub_keys)) == (1, root_id, ["bot"])
    first = record.sub_keys["bot"]
    assert first.generation == 1 and api.is_active(first.key) and not api.is_active(bot.key)
    assert text.stdout.splitlines()[0] == (
        f"Reissued child key {bot.key_id} (now revoked) as child key {first.id}, saved in "
        f"FileKeyStore('{path}') as 'bot' (generation 1)."
    )
    assert "60 requests/minute (override)" in text.stdout
    assert re.search(rf"^  key +{re.escape(str(first.key))}$", text.stdout, re.MULTILINE)
    data = as_json.json()
    kept = (await stored(other)).sub_keys["board"]
    assert (data["name"], data["key_id"], data["previous_key_id"]) == (
        "board",
        kept.id,
        board.key_id,
    )
    assert (data["generation"], data["reason"], data["key_redacted"]) == (
        1,
        "manual",
        kept.key.redacted,
    )
    assert data["key_info"]["name"] == "board" and data["store"] == f"FileKeyStore('{other}')"

    again = await run(
        "sub-keys", "reissue", first.id, "--store", str(path), env=env_for(api, use_root_key=False)
    )
    assert again.status == 0, again.stderr
    second = (await stored(path)).sub_keys["bot"]
    assert (second.generation, api.child_reissues["bot"], api.reissues) == (2, 2, 0)
    assert api.is_active(second.key) and not api.is_active(first.key)
    assert_no_plaintext(again, api)


async def test_sub_keys_reissue_with_a_store_finishes_a_rotation_left_open(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A run that died after the reissue left the child's journal open and its new key
    unknown: the dry run says a check would finish it; run again on the old id, the
    journal names the child, the lost key is recovered with the root key, then the child
    is reissued as asked, and saved.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await store_root(api, path)
    old = await store_aged_child(api, path, "bot")
    record = await stored(path)
    assert old.info is not None
    journal = PendingChildRotation(
        previous_key_id=old.id,
        previous_created_at=old.info.created_at,
        reason="manual",
        started_at=dt.datetime.now(dt.timezone.utc),
    )
    opened = attrs.evolve(record, child_rotations={"bot": journal})
    await FileKeyStore(path).save(opened, expected_generation=record.generation)
    async with AccountClient(api.root_key, base_url=api.base_url) as client:
        await client.sub_keys.reissue(old.id)  # the reissue of the run that died

    env = env_for(api, use_root_key=False)
    dry = await run("rotate", "--dry-run", *WEEK, "--store", str(path), env=env)
    result = await run("sub-keys", "reissue", old.id, "--store", str(path), env=env)

    assert dry.status == 0, dry.stderr
    assert dry.stdout.splitlines()[1:] == [
        "Dry run: a check would finish the interrupted rotation of the child key bot its "
        "journal records."
    ]
    assert result.status == 0, result.stderr
    after = await stored(path)
    assert after.child_rotations == {}
    assert api.is_active(after.sub_keys["bot"].key)
    assert api.child_reissues["bot"] == 3  # the lost one, its recovery, the one asked for
    assert api.reissues == 0
    for shown in (dry, result):
        assert_no_plaintext(shown, api)


async def test_sub_keys_reissue_with_a_store_refuses_what_it_cannot_keep_by_name(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A child with no name, and a child whose name the store keeps for another active
    child, are refused with status 2 on one line, and nothing is reissued or written.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await store_root(api, path)
    kept = await store_aged_child(api, path, "bot")
    twin = api.add_child_key("bot")
    nameless = api.add_child_key("")
    before = path.read_bytes()
    env = env_for(api, use_root_key=False)

    no_name = await run("sub-keys", "reissue", nameless.key_id, "--store", str(path), env=env)
    taken = await run("sub-keys", "reissue", twin.key_id, "--store", str(path), env=env)

    assert no_name.status == ExitStatus.USAGE
    assert f"the child key {nameless.key_id} has no name" in no_name.error_line
    assert taken.status == ExitStatus.USAGE
    assert (
        f"keeps another active child key named 'bot' ({kept.id}), not {twin.key_id}"
        in taken.error_line
    )
    for result in (no_name, taken):
        assert "nothing was reissued" in result.error_line
        assert_no_plaintext(result, api)
    assert api.child_reissues == {} and api.reissues == 0
    assert path.read_bytes() == before


async def test_sub_keys_reissue_with_a_store_replaces_a_stale_entry_of_the_name(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """The store keeps bot as a key reissued since without the store (revoked): the child
    in force under that name is reissued and saved over it, one generation on.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await store_root(api, path)
    stale = await store_aged_child(api, path, "bot")
    async with AccountClient(api.root_key, base_url=api.base_url) as client:
        current = await client.sub_keys.reissue(stale.id)  # by hand, the store not told

    result = await run(
        "sub-keys", "reissue", current.key_info.id, "--store", str(path),
        env=env_for(api, use_root_key=False),
    )  # fmt: skip

    assert result.status == 0, result.stderr
    kept = (await stored(path)).sub_keys["bot"]
    assert (kept.generation, api.child_reissues["bot"], api.reissues) == (2, 2, 0)
    assert api.is_active(kept.key) and not api.is_active(current.key)
    assert f"Reissued child key {current.key_info.id} (now revoked)" in result.stdout
    assert_no_plaintext(result, api)


async def test_sub_keys_reissue_with_redis_saves_the_child_there(
    fake_cs2cap: FakeCS2CapAPI, request: pytest.FixtureRequest
) -> None:
    """`--redis URL` in place of `--store PATH`: the child is kept in the RedisKeyStore."""
    from cs2cap_account.stores import RedisKeyStore

    url: str = request.getfixturevalue("redis_url")

    bot = fake_cs2cap.add_child_key("bot")
    result = await run("sub-keys", "reissue", bot.key_id, "--redis", url, env=env_for(fake_cs2cap))
    assert result.status == 0, result.stderr
    assert "saved in RedisKeyStore(name='cs2cap') as 'bot' (generation 1)." in result.stdout
    store = RedisKeyStore(url)
    try:
        record = await store.load()
    finally:
        await store.aclose()
    assert record is not None
    assert fake_cs2cap.is_active(record.sub_keys["bot"].key)
    assert (dict(fake_cs2cap.child_reissues), fake_cs2cap.reissues) == ({"bot": 1}, 0)
    assert_no_plaintext(result, fake_cs2cap)
