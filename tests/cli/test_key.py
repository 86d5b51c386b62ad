"""`cs2cap-account key show` and `key reissue`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

from cs2cap_account import AccountClient, FileKeyStore, KeyRecord
from cs2cap_account.cli import ExitStatus
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import TIMEOUT, Result, assert_no_plaintext, env_for, finish, run, start


async def test_key_show_prints_the_metadata_and_the_rate_limit(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """Text: id, type, limits, the redacted credential and the rate-limit headers; JSON too."""
    env = env_for(fake_cs2cap)
    text, as_json = await asyncio.gather(
        run("key", "show", env=env), run("key", "show", "--json", env=env)
    )
    assert text.status == 0, text.stderr
    assert text.stdout.startswith(f"Root key {fake_cs2cap.root_key_id}\n")
    assert "type            root key" in text.stdout
    assert "300 requests/minute" in text.stdout
    assert f"credential      {fake_cs2cap.root_key}" in text.stdout
    assert "of 300 requests left in this minute" in text.stdout
    assert "tier quant" in text.stdout
    assert text.stderr == ""

    assert as_json.status == 0, as_json.stderr
    data = as_json.json()
    assert set(data) == {"key_info", "credential", "rate_limit"}
    assert data["key_info"]["id"] == fake_cs2cap.root_key_id
    assert data["key_info"]["is_root_key"] is True
    created = dt.datetime.fromisoformat(data["key_info"]["created_at"])
    assert created.tzinfo is not None
    assert data["credential"] == str(fake_cs2cap.root_key)
    assert data["rate_limit"]["limit"] == 300
    assert data["rate_limit"]["tier"] == "quant"
    assert dt.datetime.fromisoformat(data["rate_limit"]["reset_at"]) > created
    for result in (text, as_json):
        assert_no_plaintext(result, fake_cs2cap)


async def test_key_reissue_asks_on_a_terminal_then_prints_the_new_key_once(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """On a terminal it asks: "n" reissues nothing (status 1); "y" revokes the old key
    and prints the new one once, on a line of its own.
    """
    old = fake_cs2cap.root_key

    async def answering(answer: bytes) -> Result:
        controller, terminal = os.openpty()
        try:
            process = await start("key", "reissue", env=env_for(fake_cs2cap), stdin=terminal)
            os.write(controller, answer)
            return await finish(process)
        finally:
            os.close(terminal)
            os.close(controller)

    results = await asyncio.gather(answering(b"n\n"), answering(b"y\n"))
    declined, confirmed = results
    assert declined.status == ExitStatus.ERROR
    assert "Reissue now? [y/N]" in declined.stderr
    assert "nothing was reissued" in declined.stderr
    assert_no_plaintext(declined, fake_cs2cap)

    assert confirmed.status == 0, confirmed.stderr
    new = fake_cs2cap.root_key
    assert fake_cs2cap.reissues == 1
    assert not fake_cs2cap.is_active(old)
    assert new.reveal() in confirmed.stdout.splitlines()
    assert "shown this once" in confirmed.stdout
    assert fake_cs2cap.root_key_id in confirmed.stdout
    assert_no_plaintext(confirmed, fake_cs2cap, shown_once=[new.reveal()])


async def test_ctrl_c_during_a_reissue_lets_it_finish(fake_cs2cap: FakeCS2CapAPI) -> None:
    """A SIGINT while the server is reissuing waits for the answer: the key is printed."""
    fake_cs2cap.faults.delay("reissue_key", 0.5)
    process = await start("key", "reissue", "--yes", env=env_for(fake_cs2cap))

    async def reissue_arrived() -> None:
        while fake_cs2cap.requests["reissue_key"] == 0:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reissue_arrived(), TIMEOUT)
    process.send_signal(signal.SIGINT)
    result = await finish(process)
    assert result.status == 0, result.stderr
    assert "finishing the reissue first" in result.stderr
    assert fake_cs2cap.reissues == 1
    assert fake_cs2cap.root_key.reveal() in result.stdout.splitlines()
    assert_no_plaintext(result, fake_cs2cap, shown_once=[fake_cs2cap.root_key.reveal()])


async def test_key_reissue_store_saves_the_next_generation(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """`--store`: an empty store first records the key in use (generation 1, so the journal
    has a key to stand on), then the new key as generation 2; the next run saves the next
    one. Only redacted output.

    The second run has no CS2C_API_KEY (the first run revoked it): it uses the stored key.
    """
    path = tmp_path / "key.json"
    first = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    assert first.status == 0, first.stderr
    record = await stored(path)
    assert (record.generation, record.key, record.pending) == (2, fake_cs2cap.root_key, None)
    assert f"saved in {path} as generation 2" in first.stdout
    assert str(record.key) in first.stdout
    assert "left open" not in first.stdout

    env = env_for(fake_cs2cap, use_root_key=False)
    second = await run("key", "reissue", "--yes", "--json", "--store", str(path), env=env)
    assert second.status == 0, second.stderr
    data = second.json()
    assert "key" not in data
    assert (data["generation"], data["store"], data["id"]) == (
        3,
        str(path),
        fake_cs2cap.root_key_id,
    )
    assert data["key_redacted"] == str(fake_cs2cap.root_key)
    assert data["finished_open_journal"] is False
    record = await stored(path)
    assert (record.generation, record.key) == (3, fake_cs2cap.root_key)
    assert fake_cs2cap.reissues == 2
    for result in (first, second):
        assert_no_plaintext(result, fake_cs2cap)


async def test_key_reissue_store_with_only_a_session_token_saves_generation_1(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """An empty file and only CS2C_SESSION_TOKEN: reissued with the token, the new key
    saved as generation 1; with no credential at all, a usage error and no reissue.
    """
    path = tmp_path / "key.json"
    bare = env_for(fake_cs2cap, use_root_key=False)
    none = await run("key", "reissue", "--yes", "--store", str(path), env=bare)
    assert none.status == ExitStatus.USAGE
    assert "no credential" in none.error_line
    assert fake_cs2cap.reissues == 0

    env = bare | {"CS2C_SESSION_TOKEN": fake_cs2cap.session_token.reveal()}
    result = await run("key", "reissue", "--yes", "--json", "--store", str(path), env=env)
    assert result.status == 0, result.stderr
    assert fake_cs2cap.reissues == 1
    record = await stored(path)
    assert (record.generation, record.key, record.key_id) == (
        1,
        fake_cs2cap.root_key,
        fake_cs2cap.root_key_id,
    )
    data = result.json()
    assert (data["generation"], data["id"]) == (1, fake_cs2cap.root_key_id)
    assert data["key_prefix"] == "sk_live_root"
    assert "key" not in data
    for each in (none, result):
        assert_no_plaintext(each, fake_cs2cap)


async def test_key_reissue_into_an_unwritable_store_reissues_nothing(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """The journal is written before the reissue: a store that refuses it stops the
    command (status 7) with nothing revoked and no key shown.
    """
    path = tmp_path / "key.json"
    await FileKeyStore(path).save(await first_record(fake_cs2cap), expected_generation=None)
    refuse_saves(path)
    result = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    assert result.status == ExitStatus.ROTATION
    assert "nothing was reissued" in result.error_line
    assert fake_cs2cap.reissues == 0
    record = await stored(path)
    assert (record.generation, record.pending) == (1, None)
    assert fake_cs2cap.is_active(record.key)
    assert_no_plaintext(result, fake_cs2cap)


async def test_key_reissue_with_a_stored_key_revoked_elsewhere_says_so(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A stored key revoked by someone else (no journal): status 7, nothing reissued, the
    journal closed again, and the message says how to go on.
    """
    path = tmp_path / "key.json"
    await FileKeyStore(path).save(await first_record(fake_cs2cap), expected_generation=None)
    async with AccountClient(fake_cs2cap.root_key, base_url=fake_cs2cap.base_url) as client:
        await client.reissue_key()
    result = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    assert result.status == ExitStatus.ROTATION
    assert f"the key in {path} is refused (GET /account/key failed with HTTP 401" in (
        result.error_line
    )
    assert "move the file aside" in result.error_line
    assert fake_cs2cap.reissues == 1
    assert (await stored(path)).pending is None
    assert_no_plaintext(result, fake_cs2cap)


async def test_key_reissue_shows_the_key_when_the_store_cannot_save_it(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A reissue whose key cannot be saved prints it once (the only copy) and exits 7.

    The store takes the journal, then refuses the new key: the lock is swapped for a
    symlink while the fake holds the reissue's answer, after committing it.
    """
    path = tmp_path / "key.json"
    fake_cs2cap.faults.delay_after_commit("reissue_key", 2.0)
    process = await start("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    await asyncio.wait_for(reissued(fake_cs2cap), TIMEOUT)
    refuse_saves(path)
    result = await finish(process)
    assert result.status == ExitStatus.ROTATION
    assert fake_cs2cap.reissues == 1
    assert fake_cs2cap.root_key.reveal() in result.stdout.splitlines()
    assert "store it yourself now" in result.error_line
    record = await stored(path)
    assert record.pending is not None
    assert record.key != fake_cs2cap.root_key
    assert_no_plaintext(result, fake_cs2cap, shown_once=[fake_cs2cap.root_key.reveal()])


async def test_a_lost_reissue_response_leaves_a_journal_that_a_second_run_finishes(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A lost response: the first run (no token) stops with status 7 and an open journal;
    a second run with CS2C_SESSION_TOKEN finishes it, and the stored key authenticates.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    api.faults.drop_after_commit("reissue_key")
    lost = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(api))
    assert lost.status == ExitStatus.ROTATION
    assert f"To finish the reissue left open in {path}: set CS2C_SESSION_TOKEN" in lost.error_line
    assert api.reissues == 1
    journal = await stored(path)
    assert journal.pending is not None
    assert journal.generation == journal.pending.from_generation
    assert not api.is_active(journal.key)

    wrong = env_for(api, use_root_key=False, CS2C_SESSION_TOKEN="eyJ.not-the.token")
    refused = await run("key", "reissue", "--yes", "--store", str(path), env=wrong)
    assert refused.status == ExitStatus.ROTATION
    last = refused.stderr.splitlines()[-1]  # after the rotator's warnings
    assert "recovering it with the recovery token failed" in last
    assert f"To finish the reissue left open in {path}: run `cs2cap-account" in last
    assert api.reissues == 1
    assert await stored(path) == journal

    await finishes_the_journal(api, path, journal)
    for result in (lost, refused):
        assert_no_plaintext(result, api)


async def test_a_reissue_killed_before_its_key_is_saved_is_finished_by_a_second_run(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """SIGKILL between the POST and the save: the store holds the open journal, and a
    second run with CS2C_SESSION_TOKEN finishes it.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    api.faults.delay_after_commit("reissue_key", 2.0)  # cut short by the kill
    process = await start("key", "reissue", "--yes", "--store", str(path), env=env_for(api))
    await asyncio.wait_for(reissued(api), TIMEOUT)
    process.kill()
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == -signal.SIGKILL
    journal = await stored(path)
    assert journal.pending is not None
    assert journal.pending.reason == "cli"
    assert journal.generation == journal.pending.from_generation
    assert not api.is_active(journal.key)  # revoked by the reissue whose key died with it

    await finishes_the_journal(api, path, journal)


async def finishes_the_journal(api: FakeCS2CapAPI, path: Path, journal: KeyRecord) -> None:
    """A second `key reissue --store` with the session token finishes the open journal:
    one more reissue (the recovery), the next generation saved, the journal closed.
    """
    reissues = api.reissues
    env = env_for(api, use_root_key=False, CS2C_SESSION_TOKEN=api.session_token.reveal())
    finished = await run("key", "reissue", "--yes", "--store", str(path), env=env)
    assert finished.status == 0, finished.stderr
    assert f"Finished the root key reissue left open in {path}." in finished.stdout
    assert api.reissues == reissues + 1
    record = await stored(path)
    assert record.pending is None
    assert record.generation == journal.generation + 1
    assert record.key == api.root_key
    async with AccountClient(record.key, base_url=api.base_url) as client:
        assert (await client.get_key()).id == record.key_id
    assert_no_plaintext(finished, api)


def refuse_saves(path: Path) -> None:
    """Make every later save to the key file at `path` fail: its save lock becomes a
    symlink, which the store refuses to lock through.
    """
    link = path.with_name("refused.lock")
    link.symlink_to(path.with_name("elsewhere"))
    link.replace(path.with_name(path.name + ".save.lock"))


async def stored(path: Path) -> KeyRecord:
    """The record in the key file at `path`."""
    record = await FileKeyStore(path).load()
    assert record is not None
    return record


async def first_record(api: FakeCS2CapAPI) -> KeyRecord:
    """Generation 1 of a store holding the fake's root key."""
    return KeyRecord(
        generation=1,
        key=api.root_key,
        key_id=api.root_key_id,
        saved_at=dt.datetime.now(dt.timezone.utc),
    )


async def reissued(api: FakeCS2CapAPI) -> None:
    """Return once the fake has carried out a root-key reissue."""
    while api.reissues == 0:  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.01)


async def test_key_reissue_uses_the_session_token_when_the_key_is_revoked(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """With CS2C_SESSION_TOKEN set, a revoked CS2C_API_KEY does not stop the reissue.

    In JSON, the once-shown key is the `key` field; everything else is redacted.
    """
    revoked = fake_cs2cap.root_key
    async with AccountClient(revoked, base_url=fake_cs2cap.base_url) as client:
        await client.reissue_key()
    env = env_for(fake_cs2cap, key=revoked, CS2C_SESSION_TOKEN=fake_cs2cap.session_token.reveal())
    result = await run("key", "reissue", "--yes", "--json", env=env)
    assert result.status == 0, result.stderr
    assert fake_cs2cap.reissues == 2
    data = result.json()
    assert data["key"] == fake_cs2cap.root_key.reveal()
    assert data["key_redacted"] == str(fake_cs2cap.root_key)
    assert data["id"] == fake_cs2cap.root_key_id
    assert dt.datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert_no_plaintext(result, fake_cs2cap, shown_once=[data["key"]])
