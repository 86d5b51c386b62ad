"""The `cs2cap-account` command (also `python -m cs2cap_account`).

Each subcommand has its own parser and a `_run_*` function returning the exit status::

    cs2cap-account mock-server [--host 127.0.0.1] [--port 8765] [--tier quant]
                               [--root-key sk_live_root_…] [--session-token …]
                               [--no-rate-limits] [--rate-window 60]

`mock-server` serves the fake Account API (`cs2cap_account.testing.FakeCS2CapAPI`) until
interrupted; point any client at it with `CS2C_API_BASE=http://127.0.0.1:8765/v1`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fake is imported only when `mock-server` runs
    from cs2cap_account.testing import FakeCS2CapAPI

__all__ = ["build_parser", "main"]

_TIERS = ("free", "starter", "pro", "quant")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser: one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="cs2cap-account", description="Tools for the CS2Cap Account API."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mock = commands.add_parser(
        "mock-server",
        help="serve a fake CS2Cap Account API locally",
        description="Serve a stateful fake of the CS2Cap Account API until interrupted. "
        "It prints its base URL, root key and session token: they are fake, and printed "
        "so clients can use them.",
    )
    mock.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    mock.add_argument(
        "--port", type=int, default=8765, help="port to bind, 0 for any free one (%(default)s)"
    )
    mock.add_argument("--tier", choices=_TIERS, default="quant", help="account tier (%(default)s)")
    mock.add_argument("--root-key", help="initial root key, sk_live_root_… (default: random)")
    mock.add_argument("--session-token", help="session JWT to accept (default: random)")
    mock.add_argument(
        "--no-rate-limits",
        dest="rate_limits",
        action="store_false",
        help="never answer 429 (X-RateLimit-* headers are still sent)",
    )
    mock.add_argument(
        "--rate-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="length of the per-key rate window (default: %(default)s)",
    )
    mock.set_defaults(run=_run_mock_server, command_parser=mock)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line in `argv` (default: `sys.argv[1:]`); return the exit status.

    Usage errors print argparse's message and return 2; `--help` returns 0.
    """
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
    except SystemExit as exc:  # argparse's way of reporting --help and usage errors
        return exc.code if isinstance(exc.code, int) else 0
    return status


def _run_mock_server(args: argparse.Namespace) -> int:
    from cs2cap_account.testing import FakeCS2CapAPI

    try:
        api = FakeCS2CapAPI(
            tier=args.tier,
            root_key=args.root_key,
            session_token=args.session_token,
            rate_limits=args.rate_limits,
            rate_window=args.rate_window,
            host=args.host,
            port=args.port,
        )
    except ValueError as exc:
        args.command_parser.error(str(exc))
    try:
        asyncio.run(_serve_until_stopped(api))
    except KeyboardInterrupt:  # pragma: no cover - Windows, where signals are not handled
        pass
    except OSError as exc:
        print(f"cs2cap-account mock-server: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_stopped(api: FakeCS2CapAPI, stop: asyncio.Event | None = None) -> None:
    """Serve `api` until SIGINT, SIGTERM or `stop` is set."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        async with api:
            _announce(api)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    print("cs2cap-account mock-server: stopped", file=sys.stderr, flush=True)


def _announce(api: FakeCS2CapAPI) -> None:
    # A fake server with fake keys: printing them is the point, so clients can use them.
    print(f"CS2C_API_BASE={api.base_url}")
    print(f"CS2C_API_KEY={api.root_key.reveal()}")
    print(f"CS2C_SESSION_TOKEN={api.session_token.reveal()}", flush=True)
    print(
        f"cs2cap-account mock-server: fake {api.tier}-tier account on {api.base_url}; "
        "Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
