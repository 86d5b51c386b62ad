"""`cs2cap-account key show` and `key reissue`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

from cs2cap_account import AccountClient, FileKeyStore
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
    """`--store`: generation 1 in an empty store, then the next one; only redacted output.

    The second run has no CS2C_API_KEY (the first run revoked it): it uses the stored key.
    """
    path = tmp_path / "key.json"
    first = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    assert first.status == 0, first.stderr
    record = await FileKeyStore(path).load()
    assert record is not None
    assert (record.generation, record.key) == (1, fake_cs2cap.root_key)
    assert f"saved in {path} as generation 1" in first.stdout
    assert str(record.key) in first.stdout

    env = env_for(fake_cs2cap, use_root_key=False)
    second = await run("key", "reissue", "--yes", "--json", "--store", str(path), env=env)
    assert second.status == 0, second.stderr
    data = second.json()
    assert "key" not in data
    assert (data["generation"], data["store"], data["id"]) == (
        2,
        str(path),
        fake_cs2cap.root_key_id,
    )
    record = await FileKeyStore(path).load()
    assert record is not None
    assert (record.generation, record.key) == (2, fake_cs2cap.root_key)
    assert fake_cs2cap.reissues == 2
    for result in (first, second):
        assert_no_plaintext(result, fake_cs2cap)


async def test_key_reissue_shows_the_key_when_the_store_cannot_save_it(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A reissue whose key cannot be saved prints it once (the only copy) and exits 7."""
    path = tmp_path / "key.json"
    (tmp_path / "key.json.save.lock").symlink_to(tmp_path / "elsewhere")  # refused by save()
    result = await run("key", "reissue", "--yes", "--store", str(path), env=env_for(fake_cs2cap))
    assert result.status == ExitStatus.ROTATION
    assert fake_cs2cap.reissues == 1
    assert fake_cs2cap.root_key.reveal() in result.stdout.splitlines()
    assert "store it yourself now" in result.error_line
    assert not path.exists()
    assert_no_plaintext(result, fake_cs2cap, shown_once=[fake_cs2cap.root_key.reveal()])


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
