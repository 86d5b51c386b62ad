"""Child keys in `rotate`: the line each child rotation prints, and `--dry-run`'s plan.

The plan changes nothing: it reads the store and, for the children it does not describe,
lists the child keys with the root key. A child is due when its age reaches
`--child-max-age` (`rotation._schedule.due`, as the rotator decides): a stored child's
age is read from the metadata stored with it, a named child the store does not hold yet
from the listing, both on the server's clock as the latest response's `Date` gives it
(this machine's clock when no response came). The rotator confirms a due child with the
server before reissuing it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import attrs

from cs2cap_account._models import KeyInfo, SubKeyDetail
from cs2cap_account.cli._common import api_key, make_client
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.cli._format import ago
from cs2cap_account.errors import CS2CapError
from cs2cap_account.rotation import ChildRotationEvent
from cs2cap_account.rotation._arguments import checked_child_name, checked_children
from cs2cap_account.rotation._child_journal import managed
from cs2cap_account.rotation._schedule import due
from cs2cap_account.stores import KeyRecord, KeyStore

__all__ = [
    "ChildPlan",
    "child_names",
    "plan_children",
    "plan_json",
    "plan_lines",
    "report_child_rotation",
]


def child_names(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The children `--child` names (None: every child the store records); checked.

    `--child` without `--child-max-age` is a usage error: nothing would rotate them.
    """
    if args.children and args.child_max_age is None:
        raise UsageError("--child names a child key for --child-max-age to rotate; give it too")
    if args.children is None:
        return None
    try:
        names = [checked_child_name(name, "--child") for name in args.children]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return checked_children(names)


# -- what a rotation prints ------------------------------------------------------------


def report_child_rotation(
    event: ChildRotationEvent, store: KeyStore, out: TextIO, *, as_json: bool = False
) -> None:
    """Print one line per new child key (redacted), as `rotate` does for the root key.

    With `as_json`, the line is one JSON object: the event's name, ids, generation, reason.
    """
    if as_json:
        entry = {
            "event": "child_rotated",
            "name": event.name,
            "reason": event.reason,
            "key_id": event.key_id,
            "previous_key_id": event.previous_key_id,
            "generation": event.generation,
            "rotated_at": event.rotated_at.isoformat(),
            "new_key": event.new_key.redacted,
        }
        print(json.dumps(entry), file=out, flush=True)
        return
    if event.reason == "adopted":  # another process rotated it
        line = (
            f"{event.rotated_at.isoformat()} adopted the child key {event.name} {event.key_id} "
            f"(generation {event.generation}, key {event.new_key}) from {store!r}"
        )
    else:
        line = (
            f"{event.rotated_at.isoformat()} rotated the child key {event.name} "
            f"{event.previous_key_id} -> {event.key_id} (generation {event.generation}, "
            f"reason {event.reason}); new key {event.new_key} saved in {store!r}"
        )
    print(line, file=out, flush=True)


# -- the dry run -----------------------------------------------------------------------


@attrs.frozen
class ChildPlan:
    """What a check would do with one managed child key.

    `action` is `"rotate"`, `"not_due"`, `"after_root"` (due, but the root key comes
    first in this check), `"finish"` (its rotation's journal is open) or `"none"`
    (there is no single active child of that name). `note` says why, for people.
    `judged_at` is the time its age was measured at: the server's by the latest
    response's `Date`, or this machine's when no response came.
    """

    name: str
    action: str
    key_id: str | None = None
    stored: bool = False
    created_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    judged_at: dt.datetime | None = None
    note: str = ""


async def plan_children(
    args: argparse.Namespace, store: KeyStore, *, root_first: bool
) -> list[ChildPlan]:
    """What a check would do with each managed child, in the order a check takes them.

    `root_first`: the check would rotate the root key (or finish or recover its
    rotation) first, and so rotates no child on its own.
    """
    names = child_names(args)
    max_age: dt.timedelta = args.child_max_age
    try:
        record = await store.load()
    except CS2CapError:
        record = None  # the root's part says the store cannot be read
    key = record.key if record is not None else api_key(args)
    async with make_client(args, api_key=key, session_token=None) as client:
        chosen = managed(record, names) if record is not None else names or ()
        unknown = [name for name in chosen if _stored_info(record, name) is None]
        listed = await _listed(client.sub_keys.iterate(), unknown) if unknown else {}
        server_now, now = client._server_now(), client.clock.now()
    plans = []
    for name in chosen:
        if record is not None and name in record.child_rotations:
            plans.append(ChildPlan(name, "finish", stored=name in record.sub_keys))
            continue
        stored = _stored_info(record, name)
        if stored is not None:
            info, judged_at = stored, server_now  # the stored metadata
        else:
            infos = listed.get(name, [])
            if len(infos) != 1:
                note = (
                    "no active child key has this name"
                    if not infos
                    else f"{len(infos)} active child keys have this name"
                )
                plans.append(ChildPlan(name, "none", note=note))
                continue
            info, judged_at = infos[0], server_now
        verdict = due(
            info,
            server_now=judged_at,
            local_now=now,
            max_age=max_age,
            before_expiry=None,
        )
        action = "not_due" if verdict.reason is None else "after_root" if root_first else "rotate"
        plans.append(
            ChildPlan(
                name,
                action,
                key_id=info.id,
                stored=stored is not None,
                created_at=verdict.created_at,
                due_at=verdict.created_at + max_age,
                judged_at=judged_at or now,
            )
        )
    return plans


def _stored_info(record: KeyRecord | None, name: str) -> KeyInfo | None:
    entry = None if record is None else record.sub_keys.get(name)
    return None if entry is None else entry.info


async def _listed(
    details: AsyncIterator[SubKeyDetail], names: Sequence[str]
) -> dict[str, list[KeyInfo]]:
    """The active child keys of each of `names`, from one pass over the listing."""
    found: dict[str, list[KeyInfo]] = {name: [] for name in names}
    async for detail in details:
        if detail.key.name in found:
            found[detail.key.name].append(detail.key)
    return found


def plan_json(plans: Sequence[ChildPlan]) -> dict[str, Any]:
    """The plan as the dry run's JSON fields: each child, and the names a check rotates."""
    return {
        "children": [
            {
                "name": plan.name,
                "action": plan.action,
                "would_rotate": plan.action == "rotate",
                "key_id": plan.key_id,
                "stored": plan.stored,
                "created_at": None if plan.created_at is None else plan.created_at.isoformat(),
                "next_due_at": None if plan.due_at is None else plan.due_at.isoformat(),
                "note": plan.note or None,
            }
            for plan in plans
        ],
        "children_to_rotate": [plan.name for plan in plans if plan.action == "rotate"],
    }


def plan_lines(plans: Sequence[ChildPlan]) -> list[str]:
    """The plan for people: one line per managed child, or one saying there is none."""
    if not plans:
        return [
            "Dry run: no child key is managed: the store records none (name them with --child)."
        ]
    lines = []
    for plan in plans:
        if plan.action == "finish":
            lines.append(
                f"Dry run: a check would finish the interrupted rotation of the child key "
                f"{plan.name} its journal records."
            )
            continue
        if plan.action == "none":
            lines.append(f"Dry run: child key {plan.name}: {plan.note}; nothing to rotate.")
            continue
        assert plan.created_at is not None
        assert plan.due_at is not None
        assert plan.judged_at is not None
        now = plan.judged_at
        ages = f"created {ago(plan.created_at, now)}, due {ago(plan.due_at, now)}"
        where = "" if plan.stored else ", not in the store yet"
        if plan.action == "rotate":
            lines.append(
                f"Dry run: a check would rotate the child key {plan.name} ({plan.key_id}"
                f"{where}) now (max_age): {ages}."
            )
        elif plan.action == "after_root":
            lines.append(
                f"Dry run: the child key {plan.name} ({plan.key_id}{where}) is due ({ages}), "
                "but the root key comes first in this check; a child is rotated on its own "
                "only while the root key is not."
            )
        else:
            lines.append(
                f"Dry run: the child key {plan.name} ({plan.key_id}{where}) is not due: {ages}."
            )
    return lines
