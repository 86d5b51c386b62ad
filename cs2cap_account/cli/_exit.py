"""How a command ends: its exit status, and the two failures of the command line's own.

Imported when the parser is built, so it holds nothing but the standard library.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["EXIT_STATUS_HELP", "Declined", "ExitStatus", "UsageError"]


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


class UsageError(Exception):
    """The command cannot run as given: arguments, environment, or a missing extra."""


class Declined(Exception):
    """The user answered no to a confirmation; nothing was done."""


EXIT_STATUS_HELP: Final = """\
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
