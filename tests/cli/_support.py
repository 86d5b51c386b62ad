"""Running `python -m cs2cap_account` as a real subprocess against a fake in this process.

The fake API is served by the test's own event loop, so the child is started and awaited
with asyncio's subprocess API: the loop keeps answering the child's requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from cs2cap_account import SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

TIMEOUT = 30.0
# A plaintext CS2Cap key (a redacted one has "…" right after its type prefix), or a JWT.
PLAINTEXT_KEY = re.compile(
    r"sk_(?:live|test)_(?:root_|child_)?[A-Za-z0-9_\-]{8,}|eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]+"
)
CS2C_VARIABLES = ("CS2C_API_KEY", "CS2C_API_BASE", "CS2C_SESSION_TOKEN")
# The children speak plain HTTP to loopback only. Pointing OpenSSL's CA paths at nothing
# spares each one loading the system's CA bundle when aiohttp is imported: half its start.
NO_CA_CERTIFICATES = {
    "SSL_CERT_FILE": str(Path(__file__).with_name("no-ca-certificates")),
    "SSL_CERT_DIR": str(Path(__file__).with_name("no-ca-certificates")),
}


@attrs.frozen
class Result:
    """What a finished command left behind."""

    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """What the command printed on stdout and stderr, together."""
        return self.stdout + self.stderr

    def json(self) -> Any:
        """What the command printed on stdout, parsed as JSON."""
        return json.loads(self.stdout)

    @property
    def error_line(self) -> str:
        """stderr, which for a failed command must be exactly one line."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.stderr!r}"
        return lines[0]


@attrs.frozen
class ChildCoverage:
    """Where a measured child writes its coverage data, and the configuration it reads."""

    data_file: Path
    config_file: str | None


# Set by the `_measure_children` fixture while pytest-cov measures this session.
child_coverage: ChildCoverage | None = None


def command(*args: str) -> list[str]:
    """`python -m cs2cap_account ARGS`; under pytest-cov, run by `coverage run` as well."""
    if child_coverage is None:
        return [sys.executable, "-m", "cs2cap_account", *args]
    wrapper = [sys.executable, "-m", "coverage", "run", "--parallel-mode"]
    if child_coverage.config_file:
        wrapper.append(f"--rcfile={child_coverage.config_file}")
    wrapper.append(f"--data-file={child_coverage.data_file}")
    return [*wrapper, "-m", "cs2cap_account", *args]


def env_for(
    api: FakeCS2CapAPI | None,
    *,
    key: SecretKey | str | None = None,
    use_root_key: bool = True,
    **extra: str,
) -> dict[str, str]:
    """The child's environment: ours without CS2C_*, then the fake's base URL and key.

    `key` replaces the fake's root key; `use_root_key=False` leaves CS2C_API_KEY unset.
    """
    env = {name: value for name, value in os.environ.items() if name not in CS2C_VARIABLES}
    env.update(NO_CA_CERTIFICATES)
    if api is not None:
        env["CS2C_API_BASE"] = api.base_url
        if key is not None:
            env["CS2C_API_KEY"] = key.reveal() if isinstance(key, SecretKey) else key
        elif use_root_key:
            env["CS2C_API_KEY"] = api.root_key.reveal()
    env.update(extra)
    return env


async def start(
    *args: str, env: Mapping[str, str], stdin: int | None = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """Start the command with piped stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        *command(*args),
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
    )


async def finish(process: asyncio.subprocess.Process) -> Result:
    """Wait for the command to end (within `TIMEOUT`) and collect what it printed."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


async def run(
    *args: str, env: Mapping[str, str], stdin: int | None = asyncio.subprocess.DEVNULL
) -> Result:
    """Run `cs2cap-account ARGS` to the end."""
    return await finish(await start(*args, env=env, stdin=stdin))


def every_secret(api: FakeCS2CapAPI) -> set[str]:
    """Every credential the fake handed out, to the test or to the child, revoked or not."""
    return {secret.reveal() for secret in api.issued_secrets()}


def assert_no_plaintext(
    result: Result, api: FakeCS2CapAPI | None, *, shown_once: Iterable[str] = ()
) -> None:
    """No key the fake knows appears in the output, except each of `shown_once`, once.

    Also checks for anything shaped like a plaintext key, for keys the fake never saw.
    """
    allowed = set(shown_once)
    output = result.output
    for secret in allowed:
        assert output.count(secret) == 1, "a once-shown key must be printed exactly once"
    for secret in every_secret(api) - allowed if api is not None else ():
        assert secret not in output, f"a plaintext key leaked: {SecretKey(secret)}"
    stray = [m for m in PLAINTEXT_KEY.findall(output) if m not in allowed]
    assert not stray, f"something shaped like a plaintext key leaked: {len(stray)} time(s)"
