"""`cs2cap-account sub-keys ...`: list, create, show, change, revoke and reissue child keys.

`sub-keys reissue ID --store PATH` (or `--redis URL`) rotates the child in that store
with a one-shot `KeyRotator` (never started): `rotate_child_now(name)`, by the child's
name, journals the rotation, reissues, saves the new key under the name and verifies it
before anything is shown; a rotation of that child left open by a crash is finished
first. The child is refused, with nothing reissued, when it has no name, or when the
store keeps another active child key under its name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from typing import Any, Final, TextIO

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import API_KEY_ENV, SESSION_TOKEN_ENV
from cs2cap_account._models import CreatedSubKey, KeyInfo, SubKeyDetail
from cs2cap_account.cli._common import (
    api_key,
    default_client,
    env_secret,
    make_client,
    open_store,
)
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.cli._format import (
    created_json,
    detail_json,
    emit_json,
    jsonable,
    key_info_rows,
    print_once,
    print_rows,
    revoked_json,
    sub_key_table,
)
from cs2cap_account.errors import CS2CapError, NotFoundError, RotationError, SubKeyLostError
from cs2cap_account.rotation import ChildRotationEvent, KeyRotator
from cs2cap_account.rotation._arguments import checked_child_name
from cs2cap_account.stores import KeyRecord, KeyStore

__all__ = [
    "sub_keys_create",
    "sub_keys_delete",
    "sub_keys_get",
    "sub_keys_list",
    "sub_keys_reissue",
    "sub_keys_update",
]

logger: Final = logging.getLogger("cs2cap_account.cli")


async def sub_keys_list(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys list`: every active child key, all pages."""
    client, _ = default_client(args)
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
    client, _ = default_client(args)
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
    client, _ = default_client(args)
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
    client, _ = default_client(args)
    async with client:
        detail = await client.sub_keys.update(args.key_id, **changes)
        now = client.clock.now()
    _show_detail(detail, now, out, json_output=args.json, title="Updated child key")
    return 0


async def sub_keys_delete(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys delete ID`: revoke one child key."""
    client, _ = default_client(args)
    async with client:
        gone = await client.sub_keys.delete(args.key_id)
    if args.json:
        emit_json(revoked_json(gone), out)
    else:
        when = gone.revoked_at.isoformat() if gone.revoked_at else "now"
        print(f"Revoked child key {gone.key_id} ({when}).", file=out)
    return 0


async def sub_keys_reissue(args: argparse.Namespace, out: TextIO) -> int:
    """`sub-keys reissue ID`: a new child key in place of the old one, printed once.

    A reissue whose response was lost is mended at once with the root key
    (`sub_keys.recover()`): the command still ends with a working key, printed once.
    With `--store` or `--redis` the new key is saved there instead (`_reissue_into_store`).
    """
    if args.store or args.redis:
        return await _reissue_into_store(args, out)
    client, _ = default_client(args)
    async with client:
        try:
            made = await client.sub_keys.reissue(args.key_id)
        except SubKeyLostError as lost:
            logger.warning("%s; recovering", lost)
            made = await client.sub_keys.recover(lost)
        now = client.clock.now()
    title = f"Reissued child key {args.key_id} (now revoked) as"
    _show_created(title, made, now, out, json_output=args.json)
    return 0


async def _reissue_into_store(args: argparse.Namespace, out: TextIO) -> int:
    """Rotate the child `ID` in the store, by its name, as `rotate_child_now()` does.

    The root key is the store's, or the API key while the store is empty. The session
    token, if set, lets the rotator finish a root rotation left open in the store first.
    """
    store = open_store(args)
    try:
        record = await store.load()
        key = record.key if record is not None else api_key(args)
        if key is None:
            raise UsageError(
                f"no root key: the store holds none yet, and {API_KEY_ENV} is not set "
                "(or name another variable with --api-key-env)"
            )
        async with make_client(args, api_key=key, session_token=None) as client:
            name = await _child_name(client, record, args.key_id, store)
            rotator = KeyRotator(client, store=store, recovery_token=env_secret(SESSION_TOKEN_ENV))
            try:
                event = await rotator.rotate_child_now(name)
            except RotationError as exc:
                raise await _explained(exc, store, name, args.key_id) from exc
            finally:
                await rotator.stop()
            saved = await store.load()
            now = client.clock.now()
    finally:
        await store.aclose()
    entry = None if saved is None else saved.sub_keys.get(name)
    info = None if entry is None or entry.id != event.key_id else entry.info
    _show_saved_child(event, store, args.key_id, info, now, out, json_output=args.json)
    return 0


async def _child_name(
    client: AccountClient, record: KeyRecord | None, key_id: str, store: KeyStore
) -> str:
    """The name the child `key_id` is kept under in the store; refused if it cannot be.

    A child whose rotation from `key_id` is open in the store (a crash, a lost answer)
    is named by its journal: the old key is revoked by then, and the rotator finishes it.
    """
    journals = record.child_rotations if record is not None else {}
    for open_name, pending in journals.items():
        if pending.previous_key_id == key_id:
            return open_name
    detail = await client.sub_keys.get(key_id)
    name = detail.key.name
    if name is None or not name.strip():
        raise UsageError(
            f"the child key {key_id} has no name, and the store keeps child keys by name: "
            f"name it first (sub-keys update {key_id} --name NAME), or reissue it without "
            "--store; nothing was reissued"
        )
    try:
        checked_child_name(name)
    except ValueError as exc:
        raise UsageError(f"the child key {key_id} cannot be kept by its name: {exc}") from None
    stored = None if record is None else record.sub_keys.get(name)
    if stored is not None and stored.id != key_id:
        try:
            await client.sub_keys.get(stored.id)
        except NotFoundError:
            pass  # a stale entry: the rotator finds the child in force by its name
        else:
            raise UsageError(
                f"{store!r} keeps another active child key named {name!r} ({stored.id}), "
                f"not {key_id}; two children of one name cannot both be kept there: rename "
                "one, or reissue this one without --store; nothing was reissued"
            )
    return name


async def _explained(
    error: RotationError, store: KeyStore, name: str, key_id: str
) -> RotationError:
    """The error to end with: with the child's journal still open, how to finish it.

    This process ends here, so nothing it holds is saved later: the next run of the same
    command finishes the open rotation (recovering a lost key with the root key).
    """
    try:
        record = await store.load()
    except CS2CapError:
        return error
    if record is None or name not in record.child_rotations:
        return error
    return RotationError(
        f"{str(error).rstrip('.')}. The rotation of the child key {name!r} stays open in "
        f"{store!r}: run `cs2cap-account sub-keys reissue {key_id}` with the same store "
        "again to finish it.",
        previous_key_id=error.previous_key_id,
    )


def _show_saved_child(
    event: ChildRotationEvent,
    store: KeyStore,
    key_id: str,
    info: KeyInfo | None,
    now: dt.datetime,
    out: TextIO,
    *,
    json_output: bool,
) -> None:
    if json_output:
        emit_json(
            {
                "name": event.name,
                "key_id": event.key_id,
                "previous_key_id": event.previous_key_id,
                "generation": event.generation,
                "reason": event.reason,
                "rotated_at": event.rotated_at,
                "key_redacted": event.new_key.redacted,
                "key_info": None if info is None else jsonable(info),
                "store": repr(store),
            },
            out,
        )
        return
    print(
        f"Reissued child key {key_id} (now revoked) as child key {event.key_id}, saved in "
        f"{store!r} as {event.name!r} (generation {event.generation}).",
        file=out,
    )
    rows = key_info_rows(info, now) if info is not None else [("id", event.key_id)]
    rows.append(("key", str(event.new_key)))
    print_rows(rows, out)


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
    print_once("child", made.key, out)
