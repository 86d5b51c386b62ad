"""The `cs2cap-account` argument parser: argparse, and nothing the commands need to run.

One subparser per command; each leaf sets `run`, a function returning the exit status::

    cs2cap-account key show [--json]
    cs2cap-account key reissue [--store PATH] [--yes] [--json]
    cs2cap-account rotate --max-age 30d [--before-expiry 7d] (--store PATH | --redis URL)
                          [--child-max-age 7d [--child NAME ...]]
                          [--recovery-token-env VAR] [--check-interval SECONDS] [--once]
                          [--dry-run] [--metrics-port PORT] [--log-format text|json]
    cs2cap-account status (--store PATH | --redis URL) [--max-age 30d] [--json]
    cs2cap-account sub-keys list|create|get|update|delete|reissue ... [--json]
    cs2cap-account sub-keys reissue ID [--store PATH | --redis URL] [--json]
    cs2cap-account mock-server [--host 127.0.0.1] [--port 8765] [--tier quant] ...
    cs2cap-account demo

`run` imports its command's module only when it is called, so parsing (and `--help`)
loads argparse and the standard library, not the client, aiohttp or the fake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import re
import textwrap
from collections.abc import Callable
from typing import Any, Final, NoReturn

from cs2cap_account._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    SESSION_TOKEN_ENV,
    __version__,
)
from cs2cap_account.cli._exit import EXIT_STATUS_HELP, ExitStatus

__all__ = ["PROG", "build_parser", "parse_duration"]

_TIERS = ("free", "starter", "pro", "quant")
PROG: Final = "cs2cap-account"

_ENVIRONMENT_HELP: Final = f"""\
environment:
  {API_KEY_ENV:<18}  the API key (or name another variable with --api-key-env)
  {SESSION_TOKEN_ENV:<18}  a session JWT: used when there is no API key; `key reissue`
                      prefers it; `rotate` and `key reissue --store` recover a lost
                      reissue with it
  {BASE_URL_ENV:<18}  the API's base URL (default: {DEFAULT_BASE_URL})
"""

_EPILOG: Final = _ENVIRONMENT_HELP + "\n" + EXIT_STATUS_HELP


def _later(
    module: str, name: str, *, log_level: str = "WARNING", wrap: bool = True
) -> Callable[[argparse.Namespace], int]:
    """A leaf's `run`: import `cs2cap_account.cli.<module>` when called, run `name` from it.

    With `wrap` (every API command) `name` is a coroutine function run by `_run.run_command`
    in its own event loop, with the SDK's logs at `log_level` (a `logging` level's name:
    `logging` itself is not imported to parse) and one-line errors; otherwise it is called
    as is.
    """

    def run(args: argparse.Namespace) -> int:
        command = getattr(importlib.import_module(f"cs2cap_account.cli.{module}"), name)
        if not wrap:
            status: int = command(args)
            return status
        from cs2cap_account.cli._run import run_command

        return run_command(command, args, log_level=log_level)

    return run


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
            from cs2cap_account._secret import redact_text  # hmac: only for an error

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


def _port(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    port = _count(text)
    if port > 65_535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {port}")
    return port


# -- the parser ------------------------------------------------------------------------------


def _api_options(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    """Options every API command takes."""
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=f"read the API key from the environment variable VAR (default: {API_KEY_ENV})",
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
        prog=PROG,
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_key(top)
    _add_rotate(top)
    _add_status(top)
    _add_run(top)
    _add_sub_keys(top)
    _add_mock_server(top)
    demo = _command(
        top,
        "demo",
        help="walk through the SDK against an embedded fake API (no network, no key)",
        description="Start the fake CS2Cap API in-process on 127.0.0.1 and walk through key "
        "metadata, rate limits, scheduled and on-demand rotation, child keys re-created, a "
        "429 absorbed by backoff, a lost reissue response recovered, and one child key "
        "rotated on its own schedule. Keys are shown redacted.",
    )
    _verbose_option(demo)
    demo.set_defaults(run=_later("_demo", "demo", log_level="ERROR"))
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
    show.set_defaults(run=_later("_key", "key_show"))

    reissue = _command(
        actions,
        "reissue",
        help="replace the root key (revokes it and every child key)",
        description="Reissue the root key: the old root key and every child key are "
        "revoked at once. Asks for confirmation on a terminal; elsewhere pass --yes. The "
        f"new key is printed once. Without --store it uses {SESSION_TOKEN_ENV} when set (it "
        "works even if the current key is revoked or lost), else the API key. With --store "
        "it rotates the key in that key file as KeyRotator does: a journal is written "
        "first, the new key is saved as the next generation and shown redacted, and a "
        "journal left open by a crash or a lost response is finished instead of reissuing "
        f"again ({SESSION_TOKEN_ENV} recovers a lost key). The key comes from the file, or "
        f"from {API_KEY_ENV} while the file is empty.",
    )
    reissue.add_argument(
        "--store",
        metavar="PATH",
        help="save the new key in this FileKeyStore file instead of printing it",
    )
    reissue.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _api_options(reissue)
    reissue.set_defaults(run=_later("_key", "key_reissue"))


def _add_rotate(top: Any) -> None:
    rotate = _command(
        top,
        "rotate",
        help="rotate the root key on a schedule (a long-lived process)",
        description="Run the KeyRotator: check at once, then every --check-interval, and "
        "reissue the root key when it is older than --max-age or within --before-expiry "
        "of expiring. With --child-max-age, each child key older than that (those named "
        "by --child, else every child the store records) is reissued on its own, the "
        "root key and the other children left alone. Each new key is saved in the store "
        "before anything else. Logs go to stderr, one line per rotation to stdout. "
        f"SIGTERM or Ctrl-C stops it (exit 0). The key comes from {API_KEY_ENV}, or from "
        "the store once it holds one.",
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
    rotate.add_argument(
        "--child-max-age",
        type=parse_duration,
        metavar="DURATION",
        help="also rotate each child key older than this on its own (through its own "
        "reissue route: the root key and the other children are left alone), e.g. 7d",
    )
    rotate.add_argument(
        "--child",
        dest="children",
        action="append",
        metavar="NAME",
        help="a child key, by name, for --child-max-age to rotate; repeatable (default: "
        "every child key the store records)",
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
        help=f"session JWT to recover a lost reissue response (default: {SESSION_TOKEN_ENV})",
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
    rotate.add_argument(
        "--dry-run",
        action="store_true",
        help="say whether a check would rotate now, why, and when the key is next due "
        "(and, with --child-max-age, which child keys are due); reissue nothing and write "
        "nothing",
    )
    rotate.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve /metrics (Prometheus), /livez and /readyz on this port, 0 for any free "
        'one (pip install "cs2cap-account[prometheus]")',
    )
    rotate.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104 - probes and scrapers reach a pod on its own address
        metavar="HOST",
        help="address for --metrics-port to bind (default: %(default)s)",
    )
    rotate.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line on stdout and stderr (default: %(default)s)",
    )
    _sink_options(rotate)
    _api_options(rotate, json_output=False)
    rotate.set_defaults(run=_later("_rotate", "rotate", log_level="INFO"))


def _add_status(top: Any) -> None:
    status = _command(
        top,
        "status",
        help="show the stored root key and its schedule (read-only)",
        description="Show what the store holds (generation, key id, an open journal, keys "
        "kept aside) and what the API says of the stored key (whether it authenticates, "
        "its age, its expiry); with --max-age or --before-expiry, when it falls due. "
        "Reads only: nothing is reissued or written.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", metavar="PATH", help="the key file (FileKeyStore)")
    where.add_argument("--redis", metavar="URL", help="the key in Redis (RedisKeyStore)")
    status.add_argument(
        "--max-age", type=parse_duration, metavar="DURATION", help="the rotator's --max-age"
    )
    status.add_argument(
        "--before-expiry",
        type=parse_duration,
        metavar="DURATION",
        help="the rotator's --before-expiry",
    )
    _api_options(status)
    status.set_defaults(run=_later("_status", "status"))


def _sink_options(parser: argparse.ArgumentParser) -> None:
    """Where each new key is delivered, besides the store (`cli/_sinks.py`)."""
    parser.add_argument(
        "--sink",
        action="append",
        metavar="SPEC",
        help="also deliver each new key to aws-sm:SECRET_ID (AWS Secrets Manager; pip "
        'install "cs2cap-account[aws]") or vault:URL/PATH (Vault KV v2 on the mount '
        "secret, token in VAULT_TOKEN); repeatable",
    )
    parser.add_argument(
        "--key-file", metavar="PATH", help="also write each new key to this file (mode 0600)"
    )
    parser.add_argument(
        "--key-file-format",
        choices=("raw", "env", "json"),
        default="raw",
        help="the --key-file's format: the key alone, CS2C_API_KEY=..., or JSON "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--exec",
        dest="exec_command",
        metavar="CMD",
        help=f"also run CMD after each new key, with the key in {API_KEY_ENV}",
    )


def _add_run(top: Any) -> None:
    run = _command(
        top,
        "run",
        help="run a command with the current key, restarting it on each new one",
        description=f"Run CMD with the root key in {API_KEY_ENV} (never on its command "
        "line), follow the store, and restart CMD with each new key, or send it a signal "
        "(--on-rotate signal:HUP) if it re-reads the key itself. SIGINT and SIGTERM are "
        "passed on to CMD; run exits with CMD's status. It never rotates: run `rotate` "
        "beside it.",
    )
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", metavar="PATH", help="the key file (FileKeyStore)")
    where.add_argument("--redis", metavar="URL", help="the key in Redis (RedisKeyStore)")
    run.add_argument(
        "--on-rotate",
        type=_on_rotate,
        default="restart",
        metavar="restart|signal:NAME",
        help="what a new key does to CMD (default: %(default)s)",
    )
    run.add_argument(
        "--check-interval",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how often to look at the store (Redis announces changes at once; "
        "default: %(default)g)",
    )
    _api_options(run, json_output=False)
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")
    run.set_defaults(run=_later("_supervise", "run", log_level="INFO"))


def _on_rotate(text: str) -> Any:
    from cs2cap_account.cli._supervise import parse_on_rotate

    try:
        return parse_on_rotate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_sub_keys(top: Any) -> None:
    sub = _command(top, "sub-keys", help="manage child keys")
    actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = _command(actions, "list", help="list every active child key")
    _api_options(listing)
    listing.set_defaults(run=_later("_sub_keys", "sub_keys_list"))

    create = _command(actions, "create", help="create a child key (its plaintext is printed once)")
    create.add_argument("--name", required=True, help="the child key's name")
    create.add_argument(
        "--rate-override", type=_positive_int, metavar="N", help="requests per minute"
    )
    create.add_argument(
        "--quota-override", type=_positive_int, metavar="N", help="requests per month"
    )
    _api_options(create)
    create.set_defaults(run=_later("_sub_keys", "sub_keys_create"))

    _key_id_command(
        actions, "get", "sub_keys_get", help="show one child key and its usage this month"
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
    update.set_defaults(run=_later("_sub_keys", "sub_keys_update"))

    _key_id_command(actions, "delete", "sub_keys_delete", help="revoke a child key")
    reissue = _command(
        actions,
        "reissue",
        help="replace a child key (same name and overrides; printed once)",
        description="Replace a child key: a new key with the same name and overrides; the "
        "old one is revoked at once, the root key and the other children are untouched. "
        "The new key is printed once. With --store or --redis it is rotated as "
        "KeyRotator.rotate_child_now() does: journaled in the store, saved under the "
        "child's name (so the child needs a name) and verified before it is shown, "
        "redacted; a rotation left open by a crash is finished by running the command "
        f"again. The root key then comes from the store, or from {API_KEY_ENV} while it "
        "is empty.",
    )
    reissue.add_argument("key_id", metavar="ID")
    where = reissue.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        metavar="PATH",
        help="save the new child key in this FileKeyStore file, under its name, instead "
        "of printing it",
    )
    where.add_argument(
        "--redis",
        metavar="URL",
        help='save it in Redis instead (RedisKeyStore; pip install "cs2cap-account[redis]")',
    )
    _api_options(reissue)
    reissue.set_defaults(run=_later("_sub_keys", "sub_keys_reissue"))


def _key_id_command(actions: Any, name: str, command: str, *, help: str) -> None:
    """A `sub-keys` action that takes one child key ID and the usual API options."""
    parser = _command(actions, name, help=help)
    parser.add_argument("key_id", metavar="ID")
    _api_options(parser)
    parser.set_defaults(run=_later("_sub_keys", command))


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
    mock.set_defaults(
        run=_later("_mock_server", "run_mock_server", wrap=False), command_parser=mock
    )
