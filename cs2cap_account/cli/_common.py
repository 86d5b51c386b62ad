"""What the API commands share: credentials, the client, the key store, signal handling."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import API_KEY_ENV, SESSION_TOKEN_ENV
from cs2cap_account._secret import SecretKey, redact_text
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.stores import FileKeyStore, KeyStore

__all__ = [
    "api_key",
    "default_client",
    "env_secret",
    "make_client",
    "on_signals",
    "open_store",
    "recovery_token",
    "stop_on_signals",
    "unless_stopped",
]

T = TypeVar("T")


# -- credentials and clients -----------------------------------------------------------


def env_secret(name: str) -> SecretKey | None:
    """The secret in the environment variable `name`, or None if it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return SecretKey(value) if value else None


def api_key(args: argparse.Namespace) -> SecretKey | None:
    """The API key from `--api-key-env VAR` (which must be set) or `CS2C_API_KEY`."""
    name = args.api_key_env or API_KEY_ENV
    key = env_secret(name)
    if key is None and args.api_key_env:
        raise UsageError(f"{name} is not set (it was named by --api-key-env)")
    return key


def recovery_token(args: argparse.Namespace) -> SecretKey | None:
    """The session JWT for recovering a lost reissue.

    From `--recovery-token-env VAR` (which must then be set) where the command has that
    option, else from `CS2C_SESSION_TOKEN`.
    """
    name = getattr(args, "recovery_token_env", None)
    if name:
        token = env_secret(name)
        if token is None:
            raise UsageError(f"{name} is not set (it was named by --recovery-token-env)")
        return token
    return env_secret(SESSION_TOKEN_ENV)


def make_client(
    args: argparse.Namespace, *, api_key: SecretKey | None, session_token: SecretKey | None
) -> AccountClient:
    """A client with the command's `--timeout` and `--max-retries`."""
    if api_key is None and session_token is None:
        raise UsageError(
            f"no credential: set {API_KEY_ENV} (or name another variable with "
            f"--api-key-env), or {SESSION_TOKEN_ENV}"
        )
    try:
        return AccountClient(
            api_key,
            session_token=session_token,
            timeout=args.timeout,
            max_retries=args.max_retries,
        )
    except ValueError as exc:  # a bad CS2C_API_BASE, or bad settings
        raise UsageError(str(exc)) from None


def default_client(args: argparse.Namespace) -> tuple[AccountClient, SecretKey]:
    """A client with the API key if there is one, else the session token."""
    key, token = api_key(args), env_secret(SESSION_TOKEN_ENV)
    client = make_client(args, api_key=key, session_token=token)
    credential = key or token
    assert credential is not None
    return client, credential


# -- key stores ------------------------------------------------------------------------


def open_store(args: argparse.Namespace) -> KeyStore:
    """The store named by `--store PATH` (a file) or `--redis URL`."""
    if args.store:
        return FileKeyStore(args.store)
    try:
        from cs2cap_account.stores import RedisKeyStore

        return RedisKeyStore(args.redis)
    except ImportError:
        raise UsageError(
            '--redis needs the Redis extra: pip install "cs2cap-account[redis]"'
        ) from None
    except ValueError as exc:
        raise UsageError(f"--redis: {redact_text(str(exc))}") from None


# -- signals ---------------------------------------------------------------------------


@contextlib.contextmanager
def on_signals(handler: Callable[[], None]) -> Iterator[None]:
    """Call `handler` on SIGTERM or SIGINT while the block runs (instead of stopping)."""
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, handler)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs."""
    stop = asyncio.Event()
    with on_signals(stop.set):
        yield stop


async def unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await `aw` unless `stop` is set first; then cancel it. Returns (finished, result)."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False, None
