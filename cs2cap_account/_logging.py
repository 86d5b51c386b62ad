"""The SDK's logs on stderr: `CS2C_LOG=debug|info` for any program, and the formatters.

Like `OPENAI_LOG`: with `CS2C_LOG` set, importing the package sends the `cs2cap_account`
logger's records at that level to stderr, once. Unset, this module is never imported
(the package only looks the variable up), so it costs nothing. Every line is passed
through `redact_text`: anything shaped like a key or a JWT is redacted, a second line of
defence behind log messages that name key ids only. `JsonFormatter` writes one JSON
object per line (`cs2cap-account rotate --log-format json`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import warnings
from typing import Final

from cs2cap_account._constants import LOG_ENV
from cs2cap_account._secret import redact_text

__all__ = [
    "TEXT_FORMAT",
    "JsonFormatter",
    "RedactingFormatter",
    "configure_from_env",
    "env_handlers",
]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO}
_FROM_ENV: Final = "_cs2c_log"  # marks the handler CS2C_LOG added


class RedactingFormatter(logging.Formatter):
    """A text formatter that redacts anything shaped like a key in every line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, redacted."""
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time, level, logger, message (redacted).

    A traceback, if any, is the `exc_info` field of the same object, so every line of the
    output parses as JSON.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, redacted."""
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        if record.exc_info:
            entry["exc_info"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def env_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers `configure_from_env()` put on `logger`."""
    return [handler for handler in logger.handlers if getattr(handler, _FROM_ENV, False)]


def configure_from_env() -> None:
    """Send the SDK's logs to stderr at the level `CS2C_LOG` names (`debug` or `info`).

    Once: a second call adds no second handler. An unknown value is warned about and
    otherwise ignored.
    """
    value = os.environ.get(LOG_ENV, "").strip().lower()
    if not value:
        return
    level = _LEVELS.get(value)
    if level is None:
        warnings.warn(
            f"{LOG_ENV}={value!r} is not one of {', '.join(_LEVELS)}; ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    sdk = logging.getLogger("cs2cap_account")
    if env_handlers(sdk):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(TEXT_FORMAT))
    setattr(handler, _FROM_ENV, True)
    sdk.addHandler(handler)
    sdk.setLevel(level)
