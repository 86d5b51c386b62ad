"""`cs2cap-account sub-keys ...`: list, create, show, change, revoke and reissue child keys."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from typing import Any, Final, TextIO

from cs2cap_account._models import CreatedSubKey, SubKeyDetail
from cs2cap_account.cli._common import default_client
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.cli._format import (
    created_json,
    detail_json,
    emit_json,
    key_info_rows,
    print_once,
    print_rows,
    revoked_json,
    sub_key_table,
)
from cs2cap_account.errors import SubKeyLostError

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
    """
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
