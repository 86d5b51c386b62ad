"""`cs2cap-account key show` and `key reissue`.

Each command is a coroutine taking the parsed arguments and the stream to print results
on; it returns the exit status or raises (a `CS2CapError`, `UsageError` or `Declined`),
and `_run.run_command` turns the exception into one line on stderr and an exit status.

`key reissue --store PATH` rotates the key in a `FileKeyStore` with a one-shot
`KeyRotator` (never started): its journal is written, proving the file writable, before
the reissue, and a journal left open by a crash or a lost response is finished by the
rotator's own catch-up (with `CS2C_SESSION_TOKEN` as its recovery token) rather than
reissuing again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from typing import Any, TextIO

import attrs

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import API_KEY_ENV, SESSION_TOKEN_ENV
from cs2cap_account._models import ReissuedKey
from cs2cap_account._secret import SecretKey
from cs2cap_account.cli._common import (
    api_key,
    default_client,
    env_secret,
    make_client,
    on_signals,
)
from cs2cap_account.cli._exit import Declined, UsageError
from cs2cap_account.cli._format import (
    emit_json,
    key_info_rows,
    print_once,
    print_rows,
    rate_limit_text,
    reissued_json,
)
from cs2cap_account.errors import AuthenticationError, CS2CapError, RotationError
from cs2cap_account.rotation import KeyRotator
from cs2cap_account.stores import FileKeyStore

__all__ = ["key_reissue", "key_show"]


async def key_show(args: argparse.Namespace, out: TextIO) -> int:
    """`key show`: the metadata of the key in use, and the rate limit the server reports."""
    client, credential = default_client(args)
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

    Without `--store` the session token is used when one is set: it can reissue even when
    the current key is revoked or was lost. Otherwise the API key.
    """
    _confirm_reissue(args)
    # The old key is revoked the moment the server acts: once started, the reissue runs
    # to the end, so its key is printed or saved. A first Ctrl-C (or SIGTERM) waits for
    # that; a second one abandons it.
    reissue = _reissue_into_store(args, out) if args.store else _reissue(args, out)
    task = asyncio.ensure_future(reissue)
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

    with on_signals(interrupted):
        return await task


async def _reissue(args: argparse.Namespace, out: TextIO) -> int:
    """Reissue with the session token if one is set, else the API key; print the new key."""
    token = env_secret(SESSION_TOKEN_ENV)
    key = None if token is not None else api_key(args)
    async with make_client(args, api_key=key, session_token=token) as client:
        new = await client.reissue_key()
    _show_reissued(new, out, json_output=args.json)
    return 0


# -- into a key file, on the rotator's protocol ------------------------------------------


@attrs.frozen
class _Saved:
    """What `key reissue --store` reports about the key it left in the file."""

    key: SecretKey
    key_id: str
    generation: int
    key_prefix: str | None = None
    created_at: dt.datetime | None = None


async def _reissue_into_store(args: argparse.Namespace, out: TextIO) -> int:
    """Rotate the key in the file once, as `KeyRotator.rotate_now()` does, and report it.

    The key is the file's, or the API key while the file is empty; the session token, if
    set, recovers a key whose reissue response was lost (now, or by an earlier run).
    """
    store = FileKeyStore(args.store)
    token = env_secret(SESSION_TOKEN_ENV)
    before = await store.load()
    key = before.key if before is not None else api_key(args)
    if key is None:
        if token is None:
            raise UsageError(
                f"no credential: set {API_KEY_ENV} (or name another variable with "
                f"--api-key-env), or {SESSION_TOKEN_ENV}, or use a --store that holds a key"
            )
        saved = await _first_key_with_token(args, store, token, out)
    else:
        async with make_client(args, api_key=key, session_token=None) as client:
            saved = await _rotate_once(client, store, key, token, out, json_output=args.json)
    finished = before is not None and before.pending is not None
    _show_saved(saved, store, out, json_output=args.json, finished=finished)
    return 0


async def _rotate_once(
    client: AccountClient,
    store: FileKeyStore,
    key: SecretKey,
    token: SecretKey | None,
    out: TextIO,
    *,
    json_output: bool,
) -> _Saved:
    """One rotation by a rotator that is never started: journal, reissue, save, verify."""
    rotator = KeyRotator(client, store=store, recovery_token=token)
    try:
        event = await rotator.rotate_now(reason="cli")
    except RotationError as exc:
        raise await _explained(
            exc,
            store,
            out,
            held=rotator.current_key,
            started_with=key,
            token=token,
            json_output=json_output,
        ) from exc
    finally:
        await rotator.stop()
    saved = _Saved(key=event.new_key, key_id=event.key_id, generation=event.generation)
    with contextlib.suppress(CS2CapError):  # rotated and saved: the details are a bonus
        info = await client.get_key()
        saved = attrs.evolve(saved, key_prefix=info.key_prefix, created_at=info.created_at)
    return saved


async def _explained(
    error: RotationError,
    store: FileKeyStore,
    out: TextIO,
    *,
    held: SecretKey,
    started_with: SecretKey,
    token: SecretKey | None,
    json_output: bool,
) -> RotationError:
    """The error to end with, saying what to do next; the new key printed if unsaved.

    A key the rotator reissued but could not save is held only by this process, which is
    about to end: it is printed, once, as the only copy. A journal still open is finished
    by the next run; a stored key refused with the journal closed again was revoked
    elsewhere (a failed recovery leaves the journal open, whatever refused it).
    """
    record = await store.load()
    if held != started_with and (record is None or record.key != held):
        if json_output:
            emit_json({"key": held.reveal(), "key_redacted": held.redacted}, out)
        else:
            print_once("root", held, out)
        cause = error.__cause__ or error
        return RotationError(
            f"the root key was reissued, but saving the new key in {store.path} failed "
            f"({cause}); the new key is printed above, once: store it yourself now",
            previous_key_id=error.previous_key_id,
        )
    if record is not None and record.pending is not None:
        given = f"set {SESSION_TOKEN_ENV} (a session JWT) and " if token is None else ""
        return RotationError(
            f"{str(error).rstrip('.')}. To finish the reissue left open in {store.path}: "
            f"{given}run `cs2cap-account key reissue --store {store.path}` again.",
            previous_key_id=error.previous_key_id,
        )
    if isinstance(error.__cause__, AuthenticationError):
        return RotationError(
            f"the key in {store.path} is refused ({error.__cause__}); nothing was reissued. "
            "If it was replaced elsewhere, move the file aside and run again with "
            f"{API_KEY_ENV} (the key in force) or {SESSION_TOKEN_ENV} set.",
            previous_key_id=error.previous_key_id,
        )
    return error


async def _first_key_with_token(
    args: argparse.Namespace, store: FileKeyStore, token: SecretKey, out: TextIO
) -> _Saved:
    """An empty file and only a session token: reissue with it, then store the new key.

    There is no key to journal against yet; a crash before the save loses nothing the
    token cannot replace by reissuing again.
    """
    async with make_client(args, api_key=None, session_token=token) as client:
        new = await client.reissue_key()  # the client sends the new key from here
        rotator = KeyRotator(client, store=store)
        try:
            await rotator.check()  # an empty store: the key in use becomes generation 1
        except CS2CapError as exc:
            _show_reissued(new, out, json_output=args.json)
            raise RotationError(
                f"the root key was reissued (new id {new.id}), but saving it in {store.path} "
                f"failed ({exc}); the new key is printed above, once: store it yourself now"
            ) from exc
        finally:
            await rotator.stop()
    return _Saved(
        key=new.key,
        key_id=new.id,
        generation=rotator.generation,
        key_prefix=new.key_prefix,
        created_at=new.created_at,
    )


def _show_saved(
    saved: _Saved, store: FileKeyStore, out: TextIO, *, json_output: bool, finished: bool
) -> None:
    revoked = "The previous root key and every child key are revoked."
    if json_output:
        data: dict[str, Any] = {
            "key_redacted": saved.key.redacted,
            "id": saved.key_id,
            "key_prefix": saved.key_prefix,
            "created_at": saved.created_at.isoformat() if saved.created_at else None,
            "message": f"Root key reissued. {revoked}",
            "store": str(store.path),
            "generation": saved.generation,
            "finished_open_journal": finished,
        }
        emit_json(data, out)
        return
    if finished:
        print(f"Finished the root key reissue left open in {store.path}.", file=out)
    print(
        f"Root key reissued and saved in {store.path} as generation {saved.generation}. " + revoked,
        file=out,
    )
    rows = [("id", saved.key_id), ("key", str(saved.key))]
    if saved.created_at is not None:
        rows.append(("created", saved.created_at.isoformat()))
    print_rows(rows, out)


def _show_reissued(new: ReissuedKey, out: TextIO, *, json_output: bool) -> None:
    if json_output:
        emit_json(reissued_json(new, reveal=True), out)
        return
    print("Root key reissued. The previous root key and every child key are revoked.", file=out)
    print_rows(
        [("id", new.id), ("prefix", new.key_prefix), ("created", new.created_at.isoformat())], out
    )
    print_once("root", new.key, out)
