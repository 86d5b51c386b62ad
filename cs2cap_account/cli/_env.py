"""The environment variables the command line reads, and reading a secret from one.

Imported when the parser is built (its help names the variables): standard library and
`_secret` only.
"""

from __future__ import annotations

import os
from typing import Final

from cs2cap_account._secret import SecretKey

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "DEFAULT_BASE_URL", "SESSION_TOKEN_ENV", "env_secret"]

API_KEY_ENV: Final = "CS2C_API_KEY"
BASE_URL_ENV: Final = "CS2C_API_BASE"
DEFAULT_BASE_URL: Final = "https://api.cs2c.app/v1"
SESSION_TOKEN_ENV: Final = "CS2C_SESSION_TOKEN"  # noqa: S105 - a variable name


def env_secret(name: str) -> SecretKey | None:
    """The secret in the environment variable `name`, or None if it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return SecretKey(value) if value else None
