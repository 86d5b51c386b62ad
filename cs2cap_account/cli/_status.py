"""`cs2cap-account status` and `rotate --dry-run`: what the store and the API say, read-only.

Both read the store once and ask the API about the stored key (`GET /account/key` with
it); neither writes the store, finishes a journal or reissues anything. The answer is a
`RotatorStatus`, as a running rotator's `status()` gives it, with the schedule computed by
the same pure rules (`rotation._schedule.due`, `rotation._status.next_due`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import API_KEY_ENV
from cs2cap_account._models import KeyInfo
from cs2cap_account._secret import SecretKey, redact_text
from cs2cap_account.cli._common import api_key, make_client, open_store
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.cli._format import ago, emit_json, jsonable, print_rows
from cs2cap_account.errors import AuthenticationError, CS2CapError
from cs2cap_account.rotation._schedule import due
from cs2cap_account.rotation._status import LastRotation, RotatorStatus, next_due, not_ready
from cs2cap_account.stores import KeyRecord, KeyStore

__all__ = ["dry_run", "print_dry_run", "snapshot", "status"]


def _describe(error: BaseException) -> str:
    return redact_text(f"{type(error).__name__}: {error}")


async def snapshot(
    args: argparse.Namespace, store: KeyStore, *, max_age: Any = None, before_expiry: Any = None
) -> RotatorStatus:
    """The status of the key in `store`, asking the API about it; changes nothing."""
    store_error = None
    record: KeyRecord | None = None
    try:
        record = await store.load()
    except CS2CapError as exc:
        store_error = _describe(exc)
    key = record.key if record is not None else api_key(args)
    if key is None:
        if store_error is not None:
            raise UsageError(
                f"the key store cannot be read ({store_error}), and {API_KEY_ENV} is unset"
            )
        raise UsageError(f"the store holds no key yet, and {API_KEY_ENV} is not set")
    async with make_client(args, api_key=key, session_token=None) as client:
        info, authenticates = await _ask(client, key)
        server_now = client.server_date
        now = client.clock.now()
    created_at = due_at = due_reason = None
    due_now = False
    age = None
    if info is not None:
        verdict = due(
            info,
            server_now=server_now,
            local_now=now,
            max_age=max_age,
            before_expiry=before_expiry,
        )
        created_at, due_now = verdict.created_at, verdict.reason is not None
        due_at, due_reason = next_due(
            info, created_at=created_at, max_age=max_age, before_expiry=before_expiry
        )
        age = max((server_now or now) - created_at, dt.timedelta(0))
    reachable = store_error is None
    return RotatorStatus(
        generation=0 if record is None else record.generation,
        key_id=(info.id if info is not None else None) if record is None else record.key_id,
        key_created_at=created_at,
        key_expires_at=None if info is None else info.expires_at,
        key_age=age,
        key_authenticates=authenticates,
        next_due_at=due_at,
        next_due_reason=due_reason if due_at is not None else None,
        due_now=due_now,
        last_check=None,
        last_rotation=(
            None
            if record is None
            else LastRotation(
                key_id=record.key_id,
                previous_key_id=None if record.pending is None else record.pending.previous_key_id,
                generation=record.generation,
                reason="stored" if record.pending is None else record.pending.reason,
                rotated_at=record.saved_at,
            )
        ),
        last_failure=None,
        halted=False,
        halted_reason=None,
        journal_open=None if not reachable else record is not None and record.pending is not None,
        kept_aside=None if not reachable else (0 if record is None else len(record.kept_aside)),
        recoveries=0,
        store_reachable=reachable,
        store_error=store_error,
        taken_at=now,
    )


async def _ask(client: AccountClient, key: SecretKey) -> tuple[KeyInfo | None, bool | None]:
    """The server's description of `key`, and whether it authenticates (None: no answer)."""
    try:
        return await client.get_key(key=key), True
    except AuthenticationError:
        return None, False
    except CS2CapError:
        return None, None


def status_json(status: RotatorStatus) -> dict[str, Any]:
    """The status as plain JSON data, with `ready` and the reasons it is not."""
    data: dict[str, Any] = jsonable(status)
    data["key_age_seconds"] = None if status.key_age is None else status.key_age.total_seconds()
    data.pop("key_age", None)
    data["ready"] = status.ready
    data["not_ready"] = list(not_ready(status))
    return data


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def status_rows(status: RotatorStatus) -> list[tuple[str, str]]:
    """The status as label/value rows for people."""
    now = status.taken_at
    rows = [
        ("generation", str(status.generation)),
        ("key id", status.key_id or "unknown"),
        ("authenticates", _yes_no(status.key_authenticates)),
    ]
    if status.key_created_at is not None:
        rows.append(("created", ago(status.key_created_at, now)))
    if status.key_expires_at is not None:
        rows.append(("expires", ago(status.key_expires_at, now)))
    if status.next_due_at is not None:
        rows.append(("next due", f"{ago(status.next_due_at, now)} ({status.next_due_reason})"))
    rows.append(("due now", _yes_no(status.due_now)))
    if status.last_rotation is not None:
        rows.append(("saved", ago(status.last_rotation.rotated_at, now)))
    rows += [
        ("journal open", _yes_no(status.journal_open)),
        ("kept aside", "unknown" if status.kept_aside is None else str(status.kept_aside)),
        ("store", "reachable" if status.store_reachable else f"unreachable ({status.store_error})"),
        ("ready", "yes" if status.ready else "no: " + "; ".join(not_ready(status))),
    ]
    return rows


async def status(args: argparse.Namespace, out: TextIO) -> int:
    """`status`: the key in the store, what the API says of it, the schedule. Read-only."""
    store = open_store(args)
    try:
        snap = await snapshot(args, store, max_age=args.max_age, before_expiry=args.before_expiry)
    finally:
        await store.aclose()
    if args.json:
        emit_json(status_json(snap), out)
    else:
        print(f"Root key in {store!r}:", file=out)
        print_rows(status_rows(snap), out)
    return 0


def dry_run(snap: RotatorStatus) -> dict[str, Any]:
    """What a check would do now, from `snap`: rotate or not, why, and when next due."""
    if snap.journal_open:
        action = "finish the interrupted rotation the open journal records"
        rotate = False
    elif snap.key_authenticates is False:
        action = "find the stored key refused: recover it with the recovery token, or halt"
        rotate = False
    elif snap.due_now:
        action = f"rotate the root key now ({snap.next_due_reason})"
        rotate = True
    else:
        action = "not rotate"
        rotate = False
    return {
        "would_rotate": rotate,
        "reason": snap.next_due_reason if rotate else None,
        "action": action,
        "key_id": snap.key_id,
        "generation": snap.generation,
        "next_due_at": None if snap.next_due_at is None else snap.next_due_at.isoformat(),
        "next_due_reason": snap.next_due_reason,
    }


def print_dry_run(
    snap: RotatorStatus,
    out: TextIO,
    *,
    as_json: bool,
    extra: Mapping[str, Any] | None = None,
    lines: Sequence[str] = (),
) -> None:
    """Print the dry run's verdict: one line of text, or one JSON object.

    `extra` are more fields of the JSON object, `lines` more lines of text after the
    root key's (the child keys' plan, with `rotate --child-max-age`).
    """
    verdict = dry_run(snap)
    if as_json:
        print(json.dumps({**verdict, **(extra or {})}), file=out, flush=True)
        return
    due_text = (
        f"next due {ago(snap.next_due_at, snap.taken_at)} ({snap.next_due_reason})"
        if snap.next_due_at is not None
        else "no limit applies"
    )
    print(
        f"Dry run: a check would {verdict['action']}; root key {snap.key_id} "
        f"(generation {snap.generation}), {due_text}. Nothing was reissued.",
        file=out,
        flush=True,
    )
    for line in lines:
        print(line, file=out, flush=True)
