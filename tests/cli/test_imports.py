"""What importing the package and the command line loads."""

from __future__ import annotations

import asyncio
import sys

from ._support import TIMEOUT

CHECK = """
import sys
import cs2cap_account
print(sorted(m for m in sys.modules if m.startswith(
    ("cs2cap_account.cli", "cs2cap_account._cli_", "cs2cap_account._demo",
     "cs2cap_account.testing"))))
import cs2cap_account.cli
print(sorted(m for m in sys.modules if m.startswith(
    ("cs2cap_account._demo", "cs2cap_account.testing", "aiohttp.web"))))
"""


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
