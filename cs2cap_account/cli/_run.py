"""Running one API command: its own event loop, the SDK's logs, one-line errors.

Every failure becomes one redacted line on stderr and the exit status of its kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Final, TextIO

from cs2cap_account._constants import SESSION_TOKEN_ENV
from cs2cap_account._logging import TEXT_FORMAT, JsonFormatter, RedactingFormatter, env_handlers
from cs2cap_account._secret import redact_text
from cs2cap_account.cli._exit import Declined, ExitStatus, UsageError
from cs2cap_account.cli._parser import PROG
from cs2cap_account.errors import (
    APIConnectionError,
    AuthenticationError,
    CS2CapError,
    KeyLostError,
    PermissionDeniedError,
    RateLimitError,
    ReissueOutcomeUnknownError,
    RotationError,
    SubKeyLostError,
    SubKeyOutcomeUnknownError,
)

__all__ = ["AsyncCommand", "exit_status_for", "run_command"]

AsyncCommand = Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, int]]

# No class here is a subclass of another, so the order does not matter: an unknown
# outcome (`OutcomeUnknownError`) is not a connection error, and a lost key is not one either.
_STATUS_BY_ERROR: Final[Mapping[type[BaseException], ExitStatus]] = {
    RotationError: ExitStatus.ROTATION,
    KeyLostError: ExitStatus.ROTATION,
    ReissueOutcomeUnknownError: ExitStatus.ROTATION,
    # Whether a child key was created is as unknown as a request that got no answer.
    SubKeyOutcomeUnknownError: ExitStatus.NETWORK,
    SubKeyLostError: ExitStatus.NETWORK,
    AuthenticationError: ExitStatus.AUTH,
    PermissionDeniedError: ExitStatus.PERMISSION,
    RateLimitError: ExitStatus.RATE_LIMIT,
    APIConnectionError: ExitStatus.NETWORK,
    UsageError: ExitStatus.USAGE,
}


def exit_status_for(error: BaseException) -> ExitStatus:
    """The exit status for an error a command raised (`ERROR` for any other)."""
    for kind in type(error).__mro__:
        if kind in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[kind]
    return ExitStatus.ERROR


def run_command(
    command: AsyncCommand, args: argparse.Namespace, *, log_level: str = "WARNING"
) -> int:
    """Run `command` in its own event loop, with logging, mapping errors to a status.

    The SDK's logs at `log_level` (a level's name, e.g. `"INFO"`), or DEBUG with
    `--verbose`, go to stderr.
    """
    level: int = getattr(logging, log_level)
    as_json = getattr(args, "log_format", "text") == "json"
    with _logging_to_stderr(args.verbose, level, as_json=as_json):
        try:
            return asyncio.run(command(args, sys.stdout))
        except (CS2CapError, UsageError, Declined) as exc:
            return _fail(exc, exit_status_for(exc), as_json=as_json)
        except (KeyboardInterrupt, asyncio.CancelledError):
            _error_line("interrupted", ExitStatus.INTERRUPTED, as_json=as_json, prefix="")
            return ExitStatus.INTERRUPTED
        except Exception as exc:  # a bug: still one line, the details with --verbose
            logging.getLogger("cs2cap_account.cli").debug("unexpected error", exc_info=True)
            return _fail(
                exc,
                ExitStatus.ERROR,
                prefix=f"unexpected {type(exc).__name__}: ",
                as_json=as_json,
            )


def _fail(
    error: BaseException, status: ExitStatus, *, prefix: str = "", as_json: bool = False
) -> int:
    message = prefix + (str(error) or type(error).__name__)
    if isinstance(error, KeyLostError):
        message += (
            f" (from here: set {SESSION_TOKEN_ENV} and run "
            f"`{PROG} key reissue`, with --store PATH to save the key)"
        )
    _error_line(redact_text(" ".join(message.split())), status, as_json=as_json)
    return status


def _error_line(text: str, status: ExitStatus, *, as_json: bool, prefix: str = "error: ") -> None:
    """The one line a failed command ends with, on stderr: text, or a JSON object."""
    if as_json:
        entry = {"level": "ERROR", "logger": PROG, "message": text, "exit_status": int(status)}
        print(json.dumps(entry), file=sys.stderr)
    else:
        print(f"{PROG}: {prefix}{text}", file=sys.stderr)


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool, level: int, *, as_json: bool = False) -> Iterator[None]:
    """Send the `cs2cap_account` logs at `level` (DEBUG if `verbose`) to stderr.

    As text lines, or with `as_json` one JSON object per line; redacted either way. A
    handler `CS2C_LOG` set up is set aside meanwhile (its level still counts), so no line
    is written twice.
    """
    sdk = logging.getLogger("cs2cap_account")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else RedactingFormatter(TEXT_FORMAT))
    saved = sdk.level, sdk.propagate
    from_env = env_handlers(sdk)
    for other in from_env:
        sdk.removeHandler(other)
    if verbose:
        level = logging.DEBUG
    elif from_env and saved[0] != logging.NOTSET:
        level = min(level, saved[0])
    sdk.addHandler(handler)
    sdk.setLevel(level)
    sdk.propagate = False
    try:
        yield
    finally:
        sdk.removeHandler(handler)
        for other in from_env:
            sdk.addHandler(other)
        sdk.setLevel(saved[0])
        sdk.propagate = saved[1]
