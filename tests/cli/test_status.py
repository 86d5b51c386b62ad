"""`status`, `rotate --dry-run`, `rotate --log-format json` and `rotate --metrics-port`,
each a real subprocess against a fake served by the test's own loop.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Result, assert_no_plaintext, env_for, finish, run, start
from .test_rotate import READY, until_line

MAX_AGE = ("--max-age", "30d")


async def stored_once(api: FakeCS2CapAPI, path: Path) -> None:
    """`rotate --once` with a fresh key: the store holds it as generation 1, no reissue."""
    first = await run("rotate", "--once", *MAX_AGE, "--store", str(path), env=env_for(api))
    assert first.status == 0, first.stderr
    assert api.reissues == 0


async def test_status_and_dry_run_reissue_nothing(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """With a key past --max-age in the store: `rotate --dry-run` says a check would rotate
    it now (max_age) and when it was due; `status --json` gives generation, key id, age,
    due now and ready; the text status the same for people. The fake counts 0 reissues
    after all three, and the store is as it was.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await stored_once(api, path)
    before = path.read_bytes()
    api.age_root_key(dt.timedelta(days=31))
    env = env_for(api, use_root_key=False)

    dry = await run("rotate", "--dry-run", *MAX_AGE, "--store", str(path), env=env)
    assert dry.status == 0, dry.stderr
    assert "a check would rotate the root key now (max_age)" in dry.stdout
    assert f"root key {api.root_key_id} (generation 1)" in dry.stdout
    assert "next due " in dry.stdout and "(1 day ago) (max_age)" in dry.stdout
    assert "Nothing was reissued." in dry.stdout

    shown = await run("status", "--store", str(path), *MAX_AGE, "--json", env=env)
    assert shown.status == 0, shown.stderr
    data = shown.json()
    assert (data["generation"], data["key_id"], data["due_now"]) == (1, api.root_key_id, True)
    assert data["key_authenticates"] is True and data["ready"] is True
    assert data["journal_open"] is False and data["kept_aside"] == 0
    assert abs(data["key_age_seconds"] - 31 * 86_400) < 120
    assert data["next_due_reason"] == "max_age"

    text = await run("status", "--store", str(path), env=env)
    assert text.status == 0, text.stderr
    assert re.search(rf"key id\s+{api.root_key_id}", text.stdout)
    assert re.search(r"ready\s+yes", text.stdout)

    assert api.reissues == 0
    assert path.read_bytes() == before, "status and --dry-run write nothing"
    for result in (dry, shown, text):
        assert_no_plaintext(result, api)


async def test_dry_run_of_a_fresh_key_says_when_it_is_due(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A fresh key: the dry run would not rotate, and gives the due time, as JSON with
    --log-format json.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    await stored_once(api, path)
    result = await run(
        "rotate", "--dry-run", *MAX_AGE, "--store", str(path), "--log-format", "json",
        env=env_for(api),
    )  # fmt: skip
    assert result.status == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert (verdict["would_rotate"], verdict["action"]) == (False, "not rotate")
    assert verdict["next_due_reason"] == "max_age"
    due = dt.datetime.fromisoformat(verdict["next_due_at"])
    assert abs(due - (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))).days == 0
    assert api.reissues == 0


def json_lines(result: Result) -> list[dict[str, object]]:
    """Every line of stdout and stderr, each parsed as one JSON object."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


async def test_log_format_json_writes_one_json_object_per_line(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """`rotate --once --log-format json -v`: every line on stdout and stderr parses as
    JSON (DEBUG request lines, the rotation, the not-due report) and holds no key; a
    failure's one error line is JSON too, with the exit status.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    args = ("rotate", "--once", *MAX_AGE, "--store", str(path), "--log-format", "json", "-v")
    fresh = await run(*args, env=env_for(api))
    assert fresh.status == 0, fresh.stderr
    assert any(entry.get("event") == "not_due" for entry in json_lines(fresh))

    api.age_root_key(dt.timedelta(days=31))
    aged = await run(*args, env=env_for(api, use_root_key=False))
    assert aged.status == 0, aged.stderr
    entries = json_lines(aged)
    assert any(e.get("level") == "DEBUG" and "GET /account/key" in str(e["message"])
               for e in entries)  # fmt: skip
    (rotated,) = [e for e in entries if e.get("event") == "rotated"]
    assert (rotated["generation"], rotated["reason"]) == (2, "max_age")

    api.age_root_key(dt.timedelta(days=31))
    api.faults.drop_after_commit("reissue_key")
    lost = await run(*args, env=env_for(api, use_root_key=False))
    assert lost.status == 7
    last = json_lines(lost)[-1]
    assert last["level"] == "ERROR" and last["exit_status"] == 7
    assert "the response carrying the new key was lost" in str(last["message"])
    for result in (fresh, aged, lost):
        assert_no_plaintext(result, api)


async def test_metrics_port_serves_metrics_livez_and_readyz(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """`rotate --metrics-port 0`: the port it bound is logged; once the first check ran,
    /metrics parses and shows generation 1 and the requests made, /livez and /readyz are
    200; SIGTERM stops it (0). Nothing in the scrape is a key.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    process = await start(
        "rotate", *MAX_AGE, "--store", str(path), "--check-interval", "1h",
        "--metrics-port", "0", "--metrics-host", "127.0.0.1", env=env_for(api),
    )  # fmt: skip
    head = await until_line(process, READY)
    found = re.search(r"serving /metrics, /livez and /readyz on (http://127\.0\.0\.1:\d+)", head)
    assert found, head
    base = found[1]
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
        async with http.get(base + "/readyz") as resp:
            ready = (resp.status, await resp.json())
        async with http.get(base + "/livez") as resp:
            live = resp.status
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("cs2cap_key_generation", frozenset())] == 1
    assert samples[("cs2cap_rotator_halted", frozenset())] == 0
    get_key = frozenset({("method", "GET"), ("route", "/account/key"), ("status", "200")})
    assert samples[("cs2cap_requests_total", get_key)] >= 1
    assert ready == (200, {"ready": True, "generation": 1, "key_id": api.root_key_id})
    assert live == 200
    process.send_signal(signal.SIGTERM)
    rest = await finish(process)
    assert rest.status == 0, rest.stderr
    assert_no_plaintext(Result(0, text, head + rest.stderr), api)
    assert api.reissues == 0


async def test_status_and_dry_run_after_a_lost_reissue(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """After a lost reissue with no token, the store's journal is open and its key is
    refused: `status --json` says so and is not ready, with the reasons; the dry run says
    a check would finish the interrupted rotation. Still one reissue, the lost one.
    """
    api = fake_cs2cap
    path = tmp_path / "key.json"
    api.age_root_key(dt.timedelta(days=31))
    api.faults.drop_after_commit("reissue_key")
    lost = await run("rotate", "--once", *MAX_AGE, "--store", str(path), env=env_for(api))
    assert lost.status == 7
    env = env_for(api, use_root_key=False)

    shown = await run("status", "--store", str(path), "--json", env=env)
    assert shown.status == 0, shown.stderr
    data = shown.json()
    assert (data["journal_open"], data["key_authenticates"], data["ready"]) == (True, False, False)
    assert data["not_ready"] == [f"the key in force ({data['key_id']}) does not authenticate"]
    assert data["last_rotation"]["reason"] == "max_age"

    dry = await run("rotate", "--dry-run", *MAX_AGE, "--store", str(path), env=env)
    assert dry.status == 0, dry.stderr
    assert "a check would finish the interrupted rotation" in dry.stdout
    assert api.reissues == 1
    for result in (lost, shown, dry):
        assert_no_plaintext(result, api)


async def test_status_of_an_empty_store_without_a_key_is_a_usage_error(
    tmp_path: Path,
) -> None:
    """Nothing stored and no CS2C_API_KEY: one line, status 2."""
    result = await run("status", "--store", str(tmp_path / "none.json"), env=env_for(None))
    assert result.status == 2
    assert "the store holds no key yet" in result.error_line


async def test_metrics_port_in_use_is_a_usage_error(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path
) -> None:
    """A --metrics-port something else listens on: one line naming it, status 2, and no
    check was made.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await run(
            "rotate", "--once", *MAX_AGE, "--store", str(tmp_path / "key.json"),
            "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            env=env_for(fake_cs2cap),
        )  # fmt: skip
    assert result.status == 2
    assert f"--metrics-port: cannot listen on 127.0.0.1:{port}" in result.error_line
    assert fake_cs2cap.reissues == 0


async def test_cs2c_log_and_the_commands_own_logging_write_each_line_once(
    fake_cs2cap: FakeCS2CapAPI,
) -> None:
    """`CS2C_LOG=debug` with a command: the SDK's DEBUG lines appear, each once (the
    command's handler stands in for CS2C_LOG's), and hold no key.
    """
    result = await run("key", "show", env=env_for(fake_cs2cap, CS2C_LOG="debug"))
    assert result.status == 0, result.stderr
    assert result.stderr.count("GET /account/key -> 200") == 1
    assert_no_plaintext(result, fake_cs2cap)
