"""What importing the package and the command line loads, and what `--help` loads."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from ._support import TIMEOUT

CHECK = """
import sys
import cs2cap_account
print(sorted(m for m in sys.modules if m.startswith(
    ("cs2cap_account.cli", "cs2cap_account.testing"))))
import cs2cap_account.cli
print(sorted(m for m in sys.modules if m.startswith(
    ("cs2cap_account.cli._demo", "cs2cap_account.testing", "aiohttp.web"))))
"""

# Runs the command line's `main` on the arguments given, as the console script does, and
# prints every module loaded by then: argparse exits (0) once it has printed the help.
HELP = """
import json, sys
from cs2cap_account.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""

# Heavy dependencies, and the project modules that pull them in.
HEAVY = ("aiohttp", "cattrs", "attrs", "attr", "multidict", "yarl", "tenacity", "redis")
HEAVY_OURS = (
    "cs2cap_account._client",
    "cs2cap_account._session",
    "cs2cap_account._converter",
    "cs2cap_account.errors",
    "cs2cap_account.rotation",
    "cs2cap_account.stores",
    "cs2cap_account.testing",
)


async def _loaded_by(args: list[str]) -> tuple[int, set[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HELP, *args, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0
    result = json.loads(stdout.decode().splitlines()[-1])
    return result["status"], set(result["modules"])


async def test_the_package_loads_no_cli_and_the_cli_loads_no_fake() -> None:
    """`import cs2cap_account` loads none of the CLI's modules; the CLI loads the fake
    (and the demo) only when `mock-server` or `demo` runs.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHECK, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0
    assert stdout.decode().splitlines() == ["[]", "[]"]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["sub-keys", "--help"],
        ["sub-keys", "update", "--help"],
        ["key", "reissue", "--help"],
        ["rotate", "--help"],
        ["mock-server", "--help"],
        ["demo", "--help"],
    ],
)
async def test_help_loads_neither_aiohttp_nor_cattrs_nor_the_client(args: list[str]) -> None:
    """Every `--help` is answered by the parser alone: no aiohttp, cattrs or client."""
    status, modules = await _loaded_by(args)
    assert status == 0
    for heavy in HEAVY + HEAVY_OURS:
        assert not any(m == heavy or m.startswith(heavy + ".") for m in modules), heavy
    assert "cs2cap_account.cli._parser" in modules
