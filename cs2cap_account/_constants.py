"""Constants with one home: the version, environment variable names, default URLs.

The package version is written here and nowhere else: the build reads it from this file
(`[tool.hatch.version]`), `cs2cap_account.__version__` re-exports it, and the User-Agent
header is built from it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "LOG_ENV",
    "SESSION_TOKEN_ENV",
    "USER_AGENT",
    "__version__",
]

__version__ = "0.1.0"

#: The root (or child) API key, when none is passed.
API_KEY_ENV: Final = "CS2C_API_KEY"
#: A session JWT, read by the command line for recoveries.
SESSION_TOKEN_ENV: Final = "CS2C_SESSION_TOKEN"  # noqa: S105 - a variable name
#: The API's base URL, when none is passed.
BASE_URL_ENV: Final = "CS2C_API_BASE"
#: `debug` or `info`: the SDK's logs on stderr, for any program (like `OPENAI_LOG`).
LOG_ENV: Final = "CS2C_LOG"

DEFAULT_BASE_URL: Final = "https://api.cs2c.app/v1"
USER_AGENT: Final = f"cs2cap-account/{__version__}"
