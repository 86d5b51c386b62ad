"""`cs2cap-account mock-server`: serve the fake Account API until interrupted.

It prints the fake's base URL, root key and session token: they are fake, and printed
so that clients can use them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from cs2cap_account._constants import API_KEY_ENV, BASE_URL_ENV, SESSION_TOKEN_ENV
from cs2cap_account.cli._common import on_signals
from cs2cap_account.testing import FakeCS2CapAPI

__all__ = ["run_mock_server", "serve_until_stopped"]


def run_mock_server(args: argparse.Namespace) -> int:
    """Build the fake from the arguments and serve it; return the exit status."""
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
        asyncio.run(serve_until_stopped(api))
    except KeyboardInterrupt:  # pragma: no cover - Windows, where signals are not handled
        pass
    except OSError as exc:
        print(f"cs2cap-account mock-server: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve_until_stopped(api: FakeCS2CapAPI, stop: asyncio.Event | None = None) -> None:
    """Serve `api` until SIGINT, SIGTERM or `stop` is set."""
    stop = stop or asyncio.Event()
    with on_signals(stop.set):
        async with api:
            _announce(api)
            await stop.wait()
    print("cs2cap-account mock-server: stopped", file=sys.stderr, flush=True)


def _announce(api: FakeCS2CapAPI) -> None:
    # A fake server with fake keys: printing them is the point, so clients can use them.
    print(f"{BASE_URL_ENV}={api.base_url}")
    print(f"{API_KEY_ENV}={api.root_key.reveal()}")
    print(f"{SESSION_TOKEN_ENV}={api.session_token.reveal()}", flush=True)
    print(
        f"cs2cap-account mock-server: fake {api.tier}-tier account on {api.base_url}; "
        "Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
