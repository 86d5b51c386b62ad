"""The package's public surface: a sorted, complete `__all__` and a light import."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import subprocess
import sys
import types

import pytest

import cs2cap_account

# Names defined in the foundation's modules that users are not meant to import.
INTERNAL = frozenset(
    {
        "Credentials",  # _session: the credential holder behind AccountClient
        "Options",  # _session: per-client settings, set through with_options()
        "Session",  # _session
        "Shared",  # _session
        "KeyEnvelope",  # _converter: the `{"key": ...}` wrapper, unwrapped by get_key()
        "ReissueAnswer",  # _converter: the reissue body, read leniently by reissue_key()
        "structure",  # _converter
        "parse_timestamp",  # _converter
        "redact_text",  # _secret
        "BearerHeaders",  # _secret: the request headers, built by Credentials
        "forget_frames",  # _secret: detaches tracebacks whose frames held a secret
    }
)

FOUNDATION_MODULES = (
    "cs2cap_account.errors",
    "cs2cap_account._models",
    "cs2cap_account._client",
    "cs2cap_account._clock",
    "cs2cap_account._secret",
    "cs2cap_account._session",
    "cs2cap_account._converter",
)

# The public API that DESIGN.md makes binding, importable from the top-level package.
DESIGNED = frozenset(
    {
        "AccountClient",
        "KeyInfo",
        "ReissuedKey",
        "SubKeyDetail",
        "SubKeyPage",
        "Pagination",
        "CreatedSubKey",
        "RevokedSubKey",
        "RateLimitInfo",
        "SecretKey",
        "CS2CapError",
        "APIStatusError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "RateLimitError",
        "InternalServerError",
        "APIConnectionError",
        "APITimeoutError",
        "ReissueOutcomeUnknownError",
        "KeyLostError",
        "MalformedResponseError",
        "RotationError",
        "KeyRotator",
        "RotationEvent",
        "FileKeyStore",
        "MemoryKeyStore",
        "KeyStore",
        "RedisKeyStore",
    }
)


def test_all_is_sorted_without_duplicates() -> None:
    """`__all__` is in `sorted()` order and lists each name once."""
    names = cs2cap_account.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)


def test_every_exported_name_exists() -> None:
    """Each name in `__all__` is an attribute of the package, and none is a module."""
    for name in cs2cap_account.__all__:
        assert hasattr(cs2cap_account, name), name
        assert not isinstance(getattr(cs2cap_account, name), types.ModuleType), name


def test_star_import_gives_exactly_all() -> None:
    """`from cs2cap_account import *` binds exactly the names in `__all__`."""
    namespace: dict[str, object] = {}
    exec("from cs2cap_account import *", namespace)  # noqa: S102 - fixed source
    namespace.pop("__builtins__")
    assert set(namespace) == set(cs2cap_account.__all__)


def test_designed_public_names_are_exported() -> None:
    """Every public name the design promises is importable from `cs2cap_account`."""
    assert set(cs2cap_account.__all__) >= DESIGNED


@pytest.mark.parametrize("module_name", FOUNDATION_MODULES)
def test_public_classes_and_functions_are_exported(module_name: str) -> None:
    """Each class or function a foundation module declares public is re-exported (or internal)."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        if name in INTERNAL or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        assert name in cs2cap_account.__all__, f"{module_name}.{name} is not exported"
        assert getattr(cs2cap_account, name) is value


def test_internal_names_are_not_exported() -> None:
    """Helpers meant for the SDK itself stay out of `__all__`."""
    assert not INTERNAL & set(cs2cap_account.__all__)


def test_version() -> None:
    """The version is written once: the installed distribution's is the package's."""
    assert isinstance(cs2cap_account.__version__, str)
    assert cs2cap_account.__version__.count(".") >= 1
    assert cs2cap_account.__version__ == importlib.metadata.version("cs2cap-account")


def test_import_is_light() -> None:
    """`import cs2cap_account` in a fresh interpreter loads neither the fake, the CLI nor redis."""
    code = (
        "import json, sys, cs2cap_account; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith(('cs2cap_account', 'redis', 'aiohttp.web')))))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))

    assert "cs2cap_account" in loaded
    for forbidden in ("cs2cap_account.testing", "cs2cap_account.cli", "cs2cap_account.__main__"):
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in loaded), forbidden
    assert not any(m == "redis" or m.startswith("redis.") for m in loaded)
    assert "aiohttp.web" not in loaded


@pytest.mark.parametrize(
    "module_name",
    [
        "cs2cap_account",
        "cs2cap_account._client",
        "cs2cap_account._session",
        "cs2cap_account._transport",
    ],
)
def test_importing_the_client_does_not_import_aiohttp(module_name: str) -> None:
    """A fresh interpreter importing the client (or the package) loads no part of aiohttp:
    the aiohttp transport imports it when it first sends.
    """
    code = (
        f"import json, sys, {module_name}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp')))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []
