"""What each `cs2cap-account` API command does. The parser and exit codes are in `cli.py`.

Each command is a coroutine taking the parsed arguments and the stream to print results
on; it returns the exit status or raises (a `CS2CapError`, `UsageError` or `Declined`),
and `cli.py` turns the exception into one line on stderr and an exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TextIO, TypeVar

from cs2cap_account._cli_format import (
    ago,
    created_json,
    detail_json,
    emit_json,
    key_info_rows,
    print_rows,
    rate_limit_text,
    reissued_json,
    revoked_json,
    sub_key_table,
)
from cs2cap_account._client import AccountClient
from cs2cap_account._models import CreatedSubKey, KeyInfo, ReissuedKey, SubKeyDetail
from cs2cap_account._secret import SecretKey, redact_text
from cs2cap_account.errors import RotationError, StoreError
from cs2cap_account.rotation import KeyRotator, RotationEvent
from cs2cap_account.stores import FileKeyStore, KeyRecord, KeyStore

__all__ = [
    "API_KEY_ENV",
    "SESSION_TOKEN_ENV",
    "Declined",
    "UsageError",
    "key_reissue",
    "key_show",
    "rotate",
    "sub_keys_create",
    "sub_keys_delete",
    "sub_keys_get",
    "sub_keys_list",
    "sub_keys_reissue",
    "sub_keys_update",
]

T = TypeVar("T")

API_KEY_ENV: Final = "CS2C_API_KEY"
SESSION_TOKEN_ENV: Final = "CS2C_SESSION_TOKEN"  # noqa: S105 - a variable name

logger: Final = logging.getLogger("cs2cap_account.cli")


class UsageError(Exception):
    """The command cannot run as given: arguments, environment, or a missing extra."""


class Declined(Exception):
    """The user answered no to a confirmation; nothing was done."""


# -- credentials and clients -----------------------------------------------------------


def _env_secret(name: str) -> SecretKey | None:
    value = os.environ.get(name, "").strip()
    return SecretKey(value) if value else None


def _api_key(args: argparse.Namespace) -> SecretKey | None:
    """The API key from `--api-key-env VAR` (which must be set) or `CS2C_API_KEY`."""
    name = args.api_key_env or API_KEY_ENV
    key = _env_secret(name)
    if key is None and args.api_key_env:
        raise UsageError(f"{name} is not set (it was named by --api-key-env)")
    return key


def _client(
    args: argparse.Namespace, *, api_key: SecretKey | None, session_token: SecretKey | None
) -> AccountClient:
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


def _default_client(args: argparse.Namespace) -> tuple[AccountClient, SecretKey]:
    """A client with the API key if there is one, else the session token."""
    key, token = _api_key(args), _env_secret(SESSION_TOKEN_ENV)
    client = _client(args, api_key=key, session_token=token)
    credential = key or token
    assert credential is not None
    return client, credential


# -- key -------------------------------------------------------------------------------


async def key_show(args: argparse.Namespace, out: TextIO) -> int:
    """`key show`: the metadata of the key in use, and the rate limit the server reports."""
    client, credential = _default_client(args)
    async with client:
        info = await client.get_key()
        rate = client.rate_limit
        now = client.clock.now()
    if args.json:
        emit_json({"key_info": info, "credential": credential, "rate_limit": rate}, out)
        return 0
    print(f"{'Root' if info.is_root_key else 'Child'} key {info.id}", file=out)
    rows = key_info_rows(info, now)
    rows += [("credential", str(credential)), ("rate limit now", rate_limit_text(rate))]
    print_rows(rows, out)
    return 0


def _confirm_reissue(args: argparse.Namespace) -> None:
    """Ask on the terminal; without one, refuse unless `--yes` was given."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "key reissue revokes the root key and every child key at once; stdin is not "
            "a terminal to confirm on, so pass --yes"
        )
    print(
        "Reissuing revokes the root key and every child key at once; anything still using "
        "them stops working. Reissue now? [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Declined("not confirmed; nothing was reissued")


async def key_reissue(args: argparse.Namespace, out: TextIO) -> int:
    """`key reissue`: a new root key, printed once, or saved in a `FileKeyStore`.

    The session token is used when one is set: it can reissue even when the current key
    is revoked or was lost. Otherwise the API key (from the environment, or the store's).
    """
    _confirm_reissue(args)
    # The old key is revoked the moment the server acts: once started, the reissue runs
    # to the end, so its key is printed or saved. A first Ctrl-C (or SIGTERM) waits for
    # that; a second one abandons it.
    task = asyncio.ensure_future(_reissue(args, out))
    presses = 0

    def interrupted() -> None:
        nonlocal presses
        presses += 1
        if presses > 1:
            task.cancel()
            return
        print(
            "cs2cap-account: finishing the reissue first (Ctrl-C again abandons it)",
            file=sys.stderr,
            flush=True,
        )

    with _on_signals(interrupted):
        return await task


async def _reissue(args: argparse.Namespace, out: TextIO) -> int:
    token = _env_secret(SESSION_TOKEN_ENV)
    key = None if token is not None else _api_key(args)
    if not args.store:
        async with _client(args, api_key=key, session_token=token) as client:
            new = await client.reissue_key()
        _show_reissued(new, out, json_output=args.json)
        return 0
    store = FileKeyStore(args.store)
    async with store.lock():
        record = await store.load()
        if key is None and token is None and record is not None:
            key = record.key
        async with _client(args, api_key=key, session_token=token) as client:
            new = await client.reissue_key()
            saved = KeyRecord(
                generation=1 if record is None else record.generation + 1,
                key=new.key,
                key_id=new.id,
                saved_at=client.clock.now(),
                # An open journal is finished by the next rotator to look: it re-creates
                # the child keys it had recorded, since this reissue revoked them too.
                pending=None if record is None else record.pending,
                kept_aside=() if record is None else record.kept_aside,
            )
        try:
            await store.save(
                saved, expected_generation=None if record is None else record.generation
            )
        except StoreError as exc:
            # The old key is revoked and this is the only copy of the new one: show it.
            _show_reissued(new, out, json_output=args.json)
            raise RotationError(
                f"the root key was reissued (new id {new.id}), but saving it in {store.path} "
                f"failed ({exc}); the new key is printed above, once: store it yourself now",
                previous_key_id=record.key_id if record else None,
            ) from exc
    if args.json:
        data = reissued_json(new, reveal=False)
        data.update(store=str(store.path), generation=saved.generation)
        emit_json(data, out)
    else:
        print(
            f"Root key reissued and saved in {store.path} as generation {saved.generation}. "
            "The previous root key and every child key are revoked.",
            file=out,
        )
        rows = [("id", new.id), ("key", str(new.key)), ("created", new.created_at.isoformat())]
        print_rows(rows, out)
    return 0


def _show_reissued(new: ReissuedKey, out: TextIO, *, json_output: bool) -> None:
    if json_output:
        emit_json(reissued_json(new, reveal=True), out)
        return
    print("Root key reissued. The previous root key and every child key are revoked.", file=out)
    print_rows(
        [("id", new.id), ("prefix", new.key_prefix), ("created", new.created_at.isoformat())], out
    )
    _print_once("root", new.key, out)


def _print_once(kind: str, key: SecretKey, out: TextIO) -> None:
    # The API shows a new key once and never again: printing it is the point here.
    print(f"The new {kind} key, shown this once (store it now):", file=out)
    print(key.reveal(), file=out, flush=True)


# -- sub-keys --------------------------------------------------------------------------


async def sub_keys_list(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys list`: every active child key, all pages."""
    client, _ = _default_client(args)
    async with client:
        details = [detail async for detail in client.sub_keys.iterate()]
    if args.json:
        emit_json({"keys": [detail_json(d) for d in details], "total": len(details)}, out)
    elif not details:
        print("No child keys.", file=out)
    else:
        for line in sub_key_table(details):
            print(line, file=out)
    return 0


async def sub_keys_create(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys create --name NAME`: a new child key, printed once."""
    client, _ = _default_client(args)
    async with client:
        made = await client.sub_keys.create(
            args.name,
            rate_requests_per_minute_override=args.rate_override,
            quota_requests_per_month_override=args.quota_override,
        )
        now = client.clock.now()
    _show_created("Created", made, now, out, json_output=args.json)
    return 0


async def sub_keys_get(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys get ID`: one child key's metadata and usage."""
    client, _ = _default_client(args)
    async with client:
        detail = await client.sub_keys.get(args.key_id)
        now = client.clock.now()
    _show_detail(detail, now, out, json_output=args.json)
    return 0


async def sub_keys_update(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys update ID`: change the name or overrides; `--clear-*` sends null."""
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.clear_rate_override:
        changes["rate_requests_per_minute_override"] = None
    elif args.rate_override is not None:
        changes["rate_requests_per_minute_override"] = args.rate_override
    if args.clear_quota_override:
        changes["quota_requests_per_month_override"] = None
    elif args.quota_override is not None:
        changes["quota_requests_per_month_override"] = args.quota_override
    if not changes:
        raise UsageError(
            "nothing to change: pass --name, --rate-override, --quota-override, "
            "--clear-rate-override or --clear-quota-override"
        )
    client, _ = _default_client(args)
    async with client:
        detail = await client.sub_keys.update(args.key_id, **changes)
        now = client.clock.now()
    _show_detail(detail, now, out, json_output=args.json, title="Updated child key")
    return 0


async def sub_keys_delete(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys delete ID`: revoke one child key."""
    client, _ = _default_client(args)
    async with client:
        gone = await client.sub_keys.delete(args.key_id)
    if args.json:
        emit_json(revoked_json(gone), out)
    else:
        when = gone.revoked_at.isoformat() if gone.revoked_at else "now"
        print(f"Revoked child key {gone.key_id} ({when}).", file=out)
    return 0


async def sub_keys_reissue(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys reissue ID`: a new child key in place of the old one, printed once."""
    client, _ = _default_client(args)
    async with client:
        made = await client.sub_keys.reissue(args.key_id)
        now = client.clock.now()
    title = f"Reissued child key {args.key_id} (now revoked) as"
    _show_created(title, made, now, out, json_output=args.json)
    return 0


def _show_detail(
    detail: SubKeyDetail,
    now: dt.datetime,
    out: TextIO,
    *,
    json_output: bool,
    title: str = "Child key",
) -> None:
    if json_output:
        emit_json(detail_json(detail), out)
        return
    print(f"{title} {detail.key.id}", file=out)
    rows = key_info_rows(detail.key, now)
    rows.append(("used this month", f"{detail.requests_this_month:,} requests"))
    print_rows(rows, out)


def _show_created(
    title: str, made: CreatedSubKey, now: dt.datetime, out: TextIO, *, json_output: bool
) -> None:
    if json_output:
        emit_json(created_json(made), out)
        return
    print(f"{title} child key {made.key_info.id}", file=out)
    print_rows(key_info_rows(made.key_info, now), out)
    _print_once("child", made.key, out)


# -- rotate ----------------------------------------------------------------------------


def _open_store(args: argparse.Namespace) -> KeyStore:
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


def _recovery_token(args: argparse.Namespace) -> SecretKey | None:
    if args.recovery_token_env:
        token = _env_secret(args.recovery_token_env)
        if token is None:
            raise UsageError(
                f"{args.recovery_token_env} is not set (it was named by --recovery-token-env)"
            )
        return token
    return _env_secret(SESSION_TOKEN_ENV)


async def rotate(args: argparse.Namespace, out: TextIO) -> int:
    """`rotate`: run the KeyRotator until SIGTERM/SIGINT, or for one check with `--once`."""
    if args.max_age is None and args.before_expiry is None:
        raise UsageError("rotate needs --max-age or --before-expiry (or both)")
    store = _open_store(args)
    try:
        record = await store.load()
        key = _api_key(args) or (record.key if record is not None else None)
        if key is None:
            raise UsageError(
                f"no root key: set {API_KEY_ENV} (or --api-key-env VAR), or use a store "
                "that already holds one"
            )
        token = _recovery_token(args)
        async with _client(args, api_key=key, session_token=None) as client:
            rotator = KeyRotator(
                client,
                store=store,
                max_age=args.max_age,
                before_expiry=args.before_expiry,
                check_interval=args.check_interval,
                recovery_token=token,
                recreate_sub_keys=args.recreate_sub_keys,
            )

            def report(event: RotationEvent) -> None:
                _report_rotation(event, store, out)

            rotator.on_rotate(report)
            with _stop_on_signals() as stop:
                try:
                    if args.once:
                        return await _check_once(rotator, client, args, stop, out)
                    return await _run_until_stopped(rotator, args, stop)
                finally:
                    await rotator.stop()
    finally:
        await store.aclose()


@contextlib.contextmanager
def _on_signals(handler: Callable[[], None]) -> Iterator[None]:
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
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGTERM or SIGINT while the block runs."""
    stop = asyncio.Event()
    with _on_signals(stop.set):
        yield stop


async def _unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
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


async def _check_once(
    rotator: KeyRotator,
    client: AccountClient,
    args: argparse.Namespace,
    stop: asyncio.Event,
    out: TextIO,
) -> int:
    finished, event = await _unless_stopped(rotator.check(), stop)
    if not finished:
        logger.info("stopped before the check finished")
        return 0
    if event is None:
        info = await client.get_key()
        print(_not_due(info, client.clock.now(), args), file=out, flush=True)
    return 0


def _not_due(info: KeyInfo, now: dt.datetime, args: argparse.Namespace) -> str:
    due: list[dt.datetime] = []
    if args.max_age is not None:
        due.append(info.created_at + args.max_age)
    if args.before_expiry is not None and info.expires_at is not None:
        due.append(info.expires_at - args.before_expiry)
    when = f"; due {ago(min(due), now)}" if due else ""
    return (
        f"Root key {info.id} is not due for rotation (created {ago(info.created_at, now)}{when})."
    )


async def _run_until_stopped(
    rotator: KeyRotator, args: argparse.Namespace, stop: asyncio.Event
) -> int:
    # The first check runs in the foreground, so a wrong key or an unreachable API ends
    # the command with its exit status instead of being retried in the background.
    finished, _ = await _unless_stopped(rotator.check(), stop)
    if finished:
        loop = rotator.start()
        logger.info(
            "rotating the root key (generation %d) when due; checking every %g s; "
            "SIGTERM or Ctrl-C stops",
            rotator.generation,
            args.check_interval,
        )
        # The schedule never ends by itself; if it did, its error is the command's.
        await _unless_stopped(loop, stop)
    logger.info("stopping")
    return 0


def _report_rotation(event: RotationEvent, store: KeyStore, out: TextIO) -> None:
    """Print one line per new key (redacted), for the log of a long-running `rotate`."""
    if event.reason == "adopted":  # another process (or `key reissue --store`) rotated
        line = (
            f"{event.rotated_at.isoformat()} adopted the root key {event.key_id} "
            f"(generation {event.generation}, key {event.new_key}) from {store!r}"
        )
    else:
        line = (
            f"{event.rotated_at.isoformat()} rotated the root key {event.previous_key_id} -> "
            f"{event.key_id} (generation {event.generation}, reason {event.reason}); "
            f"new key {event.new_key} saved in {store!r}"
        )
    if event.sub_keys:
        line += "; re-created child keys: " + ", ".join(sorted(event.sub_keys))
    if event.sub_key_errors:
        line += "; could not re-create: " + ", ".join(sorted(event.sub_key_errors))
    print(line, file=out, flush=True)
