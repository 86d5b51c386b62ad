"""The `cs2cap-account` command (also `python -m cs2cap_account`).

The API commands read the key from `CS2C_API_KEY` (or `--api-key-env VAR`), a session
token from `CS2C_SESSION_TOKEN` and the base URL from `CS2C_API_BASE`. An error is one
line on stderr and an exit status per kind of failure (`ExitStatus`, listed in `--help`).

`mock-server` serves the fake Account API (`cs2cap_account.testing.FakeCS2CapAPI`) until
interrupted; point any client at it with `CS2C_API_BASE=http://127.0.0.1:8765/v1`.
`demo` runs the same fake in-process and walks through the SDK against it.

The package, one module per concern: `_parser` (argparse only), `_key`, `_sub_keys`,
`_rotate` and `_mock_server` (one per command group), `_demo`, `_format` (how results are
shown), `_common` (credentials, clients, stores, signals) and `_run` (running a command:
logging, one-line errors, exit status). Parsing imports only `_parser`, `_exit` and
`cs2cap_account._constants`; a command's module is imported when it runs, so `--help`
never loads aiohttp.
"""

from __future__ import annotations

from cs2cap_account.cli._exit import ExitStatus
from cs2cap_account.cli._parser import build_parser, parse_duration

__all__ = ["ExitStatus", "build_parser", "main", "parse_duration"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line in `argv` (default: `sys.argv[1:]`); return the exit status.

    Usage errors print one line and return 2; `--help` returns 0. Every other failure
    is one line on stderr and the `ExitStatus` of its kind, never a traceback.
    """
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except SystemExit as exc:  # argparse's way of reporting --help and usage errors
        return exc.code if isinstance(exc.code, int) else 0
    return status
