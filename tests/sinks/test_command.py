"""`CommandSink`: a real subprocess per new key, the key in its environment only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability._hygiene import KeyAudit

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore
from cs2cap_account.sinks import CommandSink, SinkError
from cs2cap_account.testing import FakeCS2CapAPI

DUMP_ENV = (
    "import json, os, sys; "
    "json.dump({'key': os.environ.get(sys.argv[2]), 'id': os.environ['CS2C_KEY_ID'], "
    "'generation': os.environ['CS2C_KEY_GENERATION'], 'argv': sys.argv}, open(sys.argv[1], 'w'))"
)


async def test_the_command_gets_the_key_in_its_environment_and_not_in_argv(
    fake: FakeCS2CapAPI, fake_client: AccountClient, tmp_path: Path
) -> None:
    """The command runs once per new key with the key, its id and generation in its env."""
    out = tmp_path / "seen.json"
    sink = CommandSink([sys.executable, "-c", DUMP_ENV, str(out), "MY_KEY"], env_var="MY_KEY")
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
    event = await rotator.rotate_now()
    seen = json.loads(out.read_text())
    assert seen["key"] == event.new_key.reveal()
    assert seen["id"] == event.key_id
    assert seen["generation"] == str(event.generation)
    assert event.new_key.reveal() not in " ".join(seen["argv"])
    assert event.sink_errors == ()


async def test_a_non_zero_exit_is_a_failure_retried_then_reported(
    fake_client: AccountClient, tmp_path: Path
) -> None:
    """Exit status 3, every time: three runs, then `sink_errors` names the status."""
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)"
    sink = CommandSink([sys.executable, "-c", script])
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
    event = await rotator.rotate_now()
    assert runs.read_text() == "xxx"
    error = event.sink_errors[0].error
    assert isinstance(error, SinkError)
    assert "exited with status 3" in str(error)
    assert rotator.current_key == event.new_key


async def test_a_command_outliving_its_timeout_is_killed(tmp_path: Path) -> None:
    """A command still running after `timeout` is killed and reported as a failure."""
    from sinks.test_file import _event

    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    sink = CommandSink([sys.executable, "-c", script], timeout=0.5)
    with pytest.raises(SinkError, match=r"did not finish within 0\.5 s"):
        await sink.publish(_event())
    assert _gone(int(pid_file.read_text()))


def _gone(pid: int) -> bool:
    """Whether process `pid` has exited (and been reaped, or is a zombie)."""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


async def test_a_missing_command_is_a_sink_error() -> None:
    """A command that cannot be started: SinkError naming it."""
    from sinks.test_file import _event

    with pytest.raises(SinkError, match="cannot run /nonexistent/cmd"):
        await CommandSink(["/nonexistent/cmd"]).publish(_event())


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("echo hi",), {}, TypeError),
        (([],), {}, ValueError),
        (([1],), {}, ValueError),
        ((["true"],), {"env_var": "NOT-A-NAME"}, ValueError),
        ((["true"],), {"timeout": 0}, ValueError),
        ((["true"],), {"timeout": "5"}, TypeError),
    ],
)
def test_arguments_are_checked(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    """A wrong argv, variable name or timeout is refused at construction."""
    with pytest.raises(error):
        CommandSink(*args, **kwargs)  # type: ignore[arg-type]


def test_the_leak_audit_catches_a_key_on_a_command_line(
    fake: FakeCS2CapAPI, request: pytest.FixtureRequest
) -> None:
    """The suite-wide audit checks every subprocess's argv: a key there is a leak."""
    audit: KeyAudit = request.getfixturevalue("_no_key_leaks")
    subprocess.run([sys.executable, "-c", "pass", fake.root_key.reveal()], check=True)  # noqa: S603
    found = audit.new_leaks()  # taken, so that this test itself passes
    assert [leak.where for leak in found] == ["the argv of a subprocess"]
