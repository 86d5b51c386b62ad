"""The `cs2cap-account` command (also `python -m cs2cap_account`).

One subparser per command; each leaf sets `run`, a function returning the exit status::

    cs2cap-account key show [--json]
    cs2cap-account key reissue [--store PATH] [--yes] [--json]
    cs2cap-account rotate --max-age 30d [--before-expiry 7d] (--store PATH | --redis URL)
                          [--recovery-token-env VAR] [--check-interval SECONDS] [--once]
    cs2cap-account sub-keys list|create|get|update|delete|reissue ... [--json]
    cs2cap-account mock-server [--host 127.0.0.1] [--port 8765] [--tier quant] ...
    cs2cap-account demo

The API commands read the key from `CS2C_API_KEY` (or `--api-key-env VAR`), a session
token from `CS2C_SESSION_TOKEN` and the base URL from `CS2C_API_BASE`. An error is one
line on stderr and an exit status per kind of failure (`ExitStatus`, listed in `--help`).

`mock-server` serves the fake Account API (`cs2cap_account.testing.FakeCS2CapAPI`) until
interrupted; point any client at it with `CS2C_API_BASE=http://127.0.0.1:8765/v1`.
`demo` runs the same fake in-process and walks through the SDK against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import enum
import logging
import re
import signal
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from cs2cap_account import _cli_commands as commands
from cs2cap_account._secret import redact_text
from cs2cap_account.errors import (
    APIConnectionError,
    AuthenticationError,
    CS2CapError,
    KeyLostError,
    PermissionDeniedError,
    RateLimitError,
    ReissueOutcomeUnknownError,
    RotationError,
)

if TYPE_CHECKING:  # the fake is imported only when `mock-server` or `demo` runs
    from cs2cap_account.testing import FakeCS2CapAPI

__all__ = ["ExitStatus", "build_parser", "exit_status_for", "main", "parse_duration"]

_TIERS = ("free", "starter", "pro", "quant")
_PROG: Final = "cs2cap-account"


class ExitStatus(enum.IntEnum):
    """The command's exit status: one per kind of failure."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTH = 3
    PERMISSION = 4
    RATE_LIMIT = 5
    NETWORK = 6
    ROTATION = 7
    INTERRUPTED = 130


_EXIT_STATUS_HELP: Final = """\
exit status:
  0    success
  1    an API error not listed below (400, 404, 409, 422, 5xx), a malformed
       response, a key store that cannot be used, or a declined confirmation
  2    usage: bad arguments, no credential, `key reissue` without --yes when
       stdin is not a terminal, or --redis without the redis extra
  3    authentication: the key is unknown, revoked or expired (HTTP 401)
  4    permission denied, e.g. a child key on a key-management route (HTTP 403)
  5    rate limited (HTTP 429) beyond what retries absorb
  6    network: the API could not be reached, or did not answer in time
  7    rotation: a reissue or rotation did not complete (lost response, unknown
       outcome, new key not saved); the message says what state the key is in
  130  interrupted (Ctrl-C); `rotate` exits 0 on SIGTERM or SIGINT
"""

_ENVIRONMENT_HELP: Final = """\
environment:
  CS2C_API_KEY        the API key (or name another variable with --api-key-env)
  CS2C_SESSION_TOKEN  a session JWT: used when there is no API key; `key reissue`
                      prefers it; `rotate` recovers a lost reissue with it
  CS2C_API_BASE       the API's base URL (default: https://api.cs2c.app/v1)
"""

_EPILOG: Final = _ENVIRONMENT_HELP + "\n" + _EXIT_STATUS_HELP


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, with keys redacted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.redact_errors = True

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message` on one line and exit with the usage status."""
        text = " ".join(message.split())
        if self.redact_errors:  # a key pasted in the wrong place is not echoed back
            text = redact_text(text)
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {text} (see --help)\n")


# -- argument types ----------------------------------------------------------------------

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([dhms]?)")
_UNIT_SECONDS: Final = {"d": 86_400, "h": 3_600, "m": 60, "s": 1, "": 1}


def parse_duration(text: str) -> dt.timedelta:
    """`30d`, `12h`, `15m`, `90s` (or bare seconds) as a positive timedelta."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (use a number with d, h, m or s, e.g. 30d or 90s)"
        )
    span = dt.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if span <= dt.timedelta(0):
        raise argparse.ArgumentTypeError(f"a duration must be more than zero, got {text!r}")
    return span


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)


# -- the parser ------------------------------------------------------------------------------


def _api_options(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    """Options every API command takes."""
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="read the API key from the environment variable VAR (default: CS2C_API_KEY)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="limit on each request attempt (default: %(default)g)",
    )
    parser.add_argument(
        "--max-retries",
        type=_count,
        default=2,
        metavar="N",
        help="retries of a failed request, 0 for none (default: %(default)s)",
    )
    _verbose_option(parser)


def _verbose_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the command it sets the flag, absent it leaves the top level's.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the SDK's logs (logger cs2cap_account, DEBUG) on stderr",
    )


def _command(
    group: Any, name: str, *, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(
        name, help=help, description=_wrap(description or help), epilog=_EPILOG
    )
    return parser


def _wrap(text: str) -> str:
    # The raw formatter keeps the epilog's tables; descriptions are wrapped here instead.
    return textwrap.fill(text, width=79)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser: one subparser per command."""
    parser = _Parser(
        prog=_PROG,
        description=_wrap(
            "Tools for the CS2Cap Account API: show and reissue the root key, run "
            "scheduled rotation, manage child keys, serve a fake API, or run the demo."
        ),
        epilog=_EPILOG,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the SDK's logs (logger cs2cap_account, DEBUG) on stderr",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_key(top)
    _add_rotate(top)
    _add_sub_keys(top)
    _add_mock_server(top)
    demo = _command(
        top,
        "demo",
        help="walk through the SDK against an embedded fake API (no network, no key)",
        description="Start the fake CS2Cap API in-process on 127.0.0.1 and walk through key "
        "metadata, rate limits, scheduled and on-demand rotation, child keys, a 429 "
        "absorbed by backoff, and a lost reissue response recovered. Keys are shown "
        "redacted.",
    )
    _verbose_option(demo)
    demo.set_defaults(run=_async_command(_run_demo, log_level=logging.ERROR))
    return parser


def _add_key(top: Any) -> None:
    key = _command(top, "key", help="show or reissue the root key")
    actions = key.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = _command(
        actions,
        "show",
        help="show the key's metadata and the rate limit",
        description="Show the metadata of the key in use (never its plaintext) and the "
        "rate limit the server reported for it.",
    )
    _api_options(show)
    show.set_defaults(run=_async_command(commands.key_show))

    reissue = _command(
        actions,
        "reissue",
        help="replace the root key (revokes it and every child key)",
        description="Reissue the root key: the old root key and every child key are "
        "revoked at once. Asks for confirmation on a terminal; elsewhere pass --yes. The "
        "new key is printed once, or with --store saved in that key file as its next "
        "generation (1 if empty) and shown redacted. Uses CS2C_SESSION_TOKEN when set "
        "(it works even if the current key is revoked or lost), else the API key, else "
        "the key in --store.",
    )
    reissue.add_argument(
        "--store",
        metavar="PATH",
        help="save the new key in this FileKeyStore file instead of printing it",
    )
    reissue.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _api_options(reissue)
    reissue.set_defaults(run=_async_command(commands.key_reissue))


def _add_rotate(top: Any) -> None:
    rotate = _command(
        top,
        "rotate",
        help="rotate the root key on a schedule (a long-lived process)",
        description="Run the KeyRotator: check at once, then every --check-interval, and "
        "reissue the root key when it is older than --max-age or within --before-expiry "
        "of expiring. Each new key is saved in the store before anything else. Logs go "
        "to stderr, one line per rotation to stdout. SIGTERM or Ctrl-C stops it (exit "
        "0). The key comes from CS2C_API_KEY, or from the store once it holds one.",
    )
    rotate.add_argument(
        "--max-age",
        type=parse_duration,
        metavar="DURATION",
        help="rotate a key older than this: 30d, 12h, 15m, 90s",
    )
    rotate.add_argument(
        "--before-expiry",
        type=parse_duration,
        metavar="DURATION",
        help="rotate a key this close to its expiry, e.g. 7d",
    )
    where = rotate.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", metavar="PATH", help="keep the key in this file (FileKeyStore)")
    where.add_argument(
        "--redis",
        metavar="URL",
        help='keep the key in Redis (RedisKeyStore; pip install "cs2cap-account[redis]")',
    )
    rotate.add_argument(
        "--recovery-token-env",
        metavar="VAR",
        help="session JWT to recover a lost reissue response (default: CS2C_SESSION_TOKEN)",
    )
    rotate.add_argument(
        "--check-interval",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="time between checks, in seconds or as a duration (default: %(default)g)",
    )
    rotate.add_argument(
        "--recreate-sub-keys",
        action="store_true",
        help="re-create the child keys (same names and overrides) after each rotation; "
        "without it, a rotation revokes them for good",
    )
    rotate.add_argument("--once", action="store_true", help="check (and rotate if due) once")
    _api_options(rotate, json_output=False)
    rotate.set_defaults(run=_async_command(commands.rotate, log_level=logging.INFO))


def _add_sub_keys(top: Any) -> None:
    sub = _command(top, "sub-keys", help="manage child keys")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = _command(actions, "list", help="list every active child key")
    _api_options(listing)
    listing.set_defaults(run=_async_command(commands.sub_keys_list))

    create = _command(actions, "create", help="create a child key (its plaintext is printed once)")
    create.add_argument("--name", required=True, help="the child key's name")
    create.add_argument(
        "--rate-override", type=_positive_int, metavar="N", help="requests per minute"
    )
    create.add_argument(
        "--quota-override", type=_positive_int, metavar="N", help="requests per month"
    )
    _api_options(create)
    create.set_defaults(run=_async_command(commands.sub_keys_create))

    _key_id_command(
        actions, "get", commands.sub_keys_get, help="show one child key and its usage this month"
    )

    update = _command(
        actions,
        "update",
        help="change a child key's name or overrides",
        description="Change a child key. Options left out are left alone; --clear-* "
        "removes an override (the tier's default applies again).",
    )
    update.add_argument("key_id", metavar="ID")
    update.add_argument("--name", help="a new name")
    rate = update.add_mutually_exclusive_group()
    rate.add_argument(
        "--rate-override", type=_positive_int, metavar="N", help="requests per minute"
    )
    rate.add_argument("--clear-rate-override", action="store_true", help="remove it")
    quota = update.add_mutually_exclusive_group()
    quota.add_argument(
        "--quota-override", type=_positive_int, metavar="N", help="requests per month"
    )
    quota.add_argument("--clear-quota-override", action="store_true", help="remove it")
    _api_options(update)
    update.set_defaults(run=_async_command(commands.sub_keys_update))

    _key_id_command(actions, "delete", commands.sub_keys_delete, help="revoke a child key")
    _key_id_command(
        actions,
        "reissue",
        commands.sub_keys_reissue,
        help="replace a child key (same name and overrides; printed once)",
    )


def _key_id_command(actions: Any, name: str, run: AsyncCommand, *, help: str) -> None:
    """A `sub-keys` action that takes one child key ID and the usual API options."""
    parser = _command(actions, name, help=help)
    parser.add_argument("key_id", metavar="ID")
    _api_options(parser)
    parser.set_defaults(run=_async_command(run))


def _add_mock_server(top: Any) -> None:
    mock: _Parser = top.add_parser(
        "mock-server",
        help="serve a fake CS2Cap Account API locally",
        description=_wrap(
            "Serve a stateful fake of the CS2Cap Account API until interrupted. It prints "
            "its base URL, root key and session token: they are fake, and printed so "
            "clients can use them."
        ),
    )
    mock.redact_errors = False  # its keys are fake, and shown on purpose
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


# -- running a command ----------------------------------------------------------------------

AsyncCommand = Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, int]]


# The first matching class decides: a lost or unknown reissue outranks "network".
_STATUS_BY_ERROR: Final[tuple[tuple[type[BaseException], ExitStatus], ...]] = (
    (RotationError, ExitStatus.ROTATION),
    (KeyLostError, ExitStatus.ROTATION),
    (ReissueOutcomeUnknownError, ExitStatus.ROTATION),
    (AuthenticationError, ExitStatus.AUTH),
    (PermissionDeniedError, ExitStatus.PERMISSION),
    (RateLimitError, ExitStatus.RATE_LIMIT),
    (APIConnectionError, ExitStatus.NETWORK),
    (commands.UsageError, ExitStatus.USAGE),
)


def exit_status_for(error: BaseException) -> ExitStatus:
    """The exit status for an error a command raised (`ERROR` for any other)."""
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return ExitStatus.ERROR


def _async_command(
    command: AsyncCommand, *, log_level: int = logging.WARNING
) -> Callable[[argparse.Namespace], int]:
    """Wrap `command` to run in its own event loop, with logging, mapping errors to status."""

    def run(args: argparse.Namespace) -> int:
        with _logging_to_stderr(args.verbose, log_level):
            try:
                return asyncio.run(command(args, sys.stdout))
            except (CS2CapError, commands.UsageError, commands.Declined) as exc:
                return _fail(exc, exit_status_for(exc))
            except (KeyboardInterrupt, asyncio.CancelledError):
                print(f"{_PROG}: interrupted", file=sys.stderr)
                return ExitStatus.INTERRUPTED
            except Exception as exc:  # a bug: still one line, the details with --verbose
                logging.getLogger("cs2cap_account.cli").debug("unexpected error", exc_info=True)
                return _fail(exc, ExitStatus.ERROR, prefix=f"unexpected {type(exc).__name__}: ")

    return run


def _fail(error: BaseException, status: ExitStatus, *, prefix: str = "") -> int:
    message = prefix + (str(error) or type(error).__name__)
    if isinstance(error, KeyLostError):
        message += (
            f" (from here: set {commands.SESSION_TOKEN_ENV} and run "
            f"`{_PROG} key reissue`, with --store PATH to save the key)"
        )
    print(f"{_PROG}: error: {redact_text(' '.join(message.split()))}", file=sys.stderr)
    return status


class _RedactingFormatter(logging.Formatter):
    """A second line of defence: anything shaped like a key is redacted in every line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool, level: int) -> Iterator[None]:
    """Send the `cs2cap_account` logs at `level` (DEBUG if `verbose`) to stderr."""
    sdk = logging.getLogger("cs2cap_account")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = sdk.level, sdk.propagate
    sdk.addHandler(handler)
    sdk.setLevel(logging.DEBUG if verbose else level)
    sdk.propagate = False
    try:
        yield
    finally:
        sdk.removeHandler(handler)
        sdk.setLevel(saved[0])
        sdk.propagate = saved[1]


async def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from cs2cap_account._demo import run_demo

    return await run_demo(out)


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
