"""`CS2C_LOG=debug|info`: the SDK's logs on stderr for any program, free when unset."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from cs2cap_account._logging import JsonFormatter, RedactingFormatter
from cs2cap_account.testing import FakeCS2CapAPI

PROGRAM = """
import asyncio, sys
import cs2cap_account

async def main():
    async with cs2cap_account.AccountClient() as client:
        await client.get_key()
    print("done", file=sys.stderr)

asyncio.run(main())
"""


async def run_program(api: FakeCS2CapAPI, **env: str) -> tuple[int, str]:
    """Run `PROGRAM` (a client reading its key from the environment) in a subprocess."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CS2C_")}
    base.update(CS2C_API_BASE=api.base_url, CS2C_API_KEY=api.root_key.reveal(), **env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROGRAM, env=base, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.mark.parametrize(("value", "shown"), [("debug", True), ("info", False), ("", False)])
async def test_cs2c_log_sends_the_sdks_logs_to_stderr(
    fake_cs2cap: FakeCS2CapAPI,
    value: str,
    shown: bool,
    assert_no_key_leaks: Callable[..., None],
) -> None:
    """`CS2C_LOG=debug` shows each request (method, path, status) on stderr; `info` does
    not show DEBUG lines; unset, the program's stderr is its own. No line holds a key.
    """
    status, stderr = await run_program(fake_cs2cap, CS2C_LOG=value)
    assert status == 0, stderr
    assert ("GET /account/key -> 200" in stderr) is shown
    if not value:
        assert stderr == "done\n"
    assert_no_key_leaks(stderr, where=f"CS2C_LOG={value!r}")


def test_unset_it_costs_nothing() -> None:
    """Without CS2C_LOG, `import cs2cap_account` imports neither `logging` nor the module
    that configures it; with it, one handler, once.
    """
    code = (
        "import sys, cs2cap_account, importlib; "
        "print(int('logging' in sys.modules), int('cs2cap_account._logging' in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != "CS2C_LOG"}
    unset = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert unset.stdout.split() == ["0", "0"]
    twice = (
        "import logging, importlib, cs2cap_account; "
        "importlib.import_module('cs2cap_account._logging').configure_from_env(); "
        "print(len(logging.getLogger('cs2cap_account').handlers))"
    )
    on = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", twice], env={**env, "CS2C_LOG": "info"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert on.stdout.strip() == "1"


def test_an_unknown_level_is_warned_about_and_ignored() -> None:
    """`CS2C_LOG=loud` warns once on stderr and adds no handler."""
    code = (
        "import logging, cs2cap_account; print(len(logging.getLogger('cs2cap_account').handlers))"
    )
    env = {**os.environ, "CS2C_LOG": "loud"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "0"
    assert "CS2C_LOG='loud' is not one of debug, info; ignored" in done.stderr


def test_formatters_redact_and_json_is_one_line() -> None:
    """Both formatters redact anything shaped like a key; the JSON one writes one parsable
    line per record, traceback included.
    """
    key = "sk_live_root_" + "a" * 28
    try:
        raise ValueError(f"bad {key}")
    except ValueError:
        record = logging.LogRecord(
            "cs2cap_account", logging.ERROR, __file__, 1, "saw %s", (key,), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("ERROR", "cs2cap_account")
    assert entry["message"].startswith("saw sk_live_root_…")
    assert "ValueError" in entry["exc_info"]
    for text in (line, RedactingFormatter("%(message)s").format(record)):
        assert key not in text


def test_configure_from_env_adds_one_handler_at_the_level_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In this process: `CS2C_LOG=info` puts one redacting handler on the SDK's logger at
    INFO, once however often it is called; unset, it does nothing.
    """
    from cs2cap_account._logging import configure_from_env, env_handlers

    sdk = logging.getLogger("cs2cap_account")
    level = sdk.level
    monkeypatch.delenv("CS2C_LOG", raising=False)
    configure_from_env()
    assert env_handlers(sdk) == []
    monkeypatch.setenv("CS2C_LOG", "INFO")
    try:
        configure_from_env()
        configure_from_env()
        (handler,) = env_handlers(sdk)
        assert isinstance(handler.formatter, RedactingFormatter)
        assert sdk.level == logging.INFO
    finally:
        for handler in env_handlers(sdk):
            sdk.removeHandler(handler)
        sdk.setLevel(level)
