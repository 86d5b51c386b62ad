"""Running one API command: its own event loop, the SDK's logs, one-line errors.

Every failure becomes one redacted line on stderr and the exit status of its kind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Final, TextIO

from cs2cap_account._constants import SESSION_TOKEN_ENV
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
    with _logging_to_stderr(args.verbose, level):
        try:
            return asyncio.run(command(args, sys.stdout))
        except (CS2CapError, UsageError, Declined) as exc:
            return _fail(exc, exit_status_for(exc))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print(f"{PROG}: interrupted", file=sys.stderr)
            return ExitStatus.INTERRUPTED
        except Exception as exc:  # a bug: still one line, the details with --verbose
            logging.getLogger("cs2cap_account.cli").debug("unexpected error", exc_info=True)
            return _fail(exc, ExitStatus.ERROR, prefix=f"unexpected {type(exc).__name__}: ")


def _fail(error: BaseException, status: ExitStatus, *, prefix: str = "") -> int:
    message = prefix + (str(error) or type(error).__name__)
    if isinstance(error, KeyLostError):
        message += (
            f" (from here: set {SESSION_TOKEN_ENV} and run "
            f"`{PROG} key reissue`, with --store PATH to save the key)"
        )
    print(f"{PROG}: error: {redact_text(' '.join(message.split()))}", file=sys.stderr)
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
