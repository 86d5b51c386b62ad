"""`cs2cap-account rotate`: the KeyRotator as a long-lived process, or one check.

With `--child-max-age` the rotator also rotates child keys on their own schedule (those
`--child` names, else every child the store records); each child rotation prints a line
of its own (`_children`). With `--once`, a child rotation that failed ends the command
with the rotation status, after the others have run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Final, TextIO

from cs2cap_account._client import AccountClient
from cs2cap_account._constants import API_KEY_ENV
from cs2cap_account._models import KeyInfo
from cs2cap_account.cli._children import child_names, report_child_rotation
from cs2cap_account.cli._common import (
    api_key,
    make_client,
    open_store,
    recovery_token,
    stop_on_signals,
    unless_stopped,
)
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.cli._format import ago
from cs2cap_account.cli._sinks import sinks_from_args
from cs2cap_account.errors import RotationError
from cs2cap_account.rotation import (
    ChildRotationEvent,
    FailureEvent,
    KeyRotator,
    RotationEvent,
    RotationFailed,
    RotationStage,
)
from cs2cap_account.stores import KeyStore

__all__ = ["rotate"]

logger: Final = logging.getLogger("cs2cap_account.cli")


async def rotate(args: argparse.Namespace, out: TextIO) -> int:
    """`rotate`: run the KeyRotator until SIGTERM/SIGINT, or for one check with `--once`."""
    if args.max_age is None and args.before_expiry is None and args.child_max_age is None:
        raise UsageError("rotate needs --max-age, --before-expiry or --child-max-age (or more)")
    children = child_names(args)
    store = open_store(args)
    try:
        if args.dry_run:
            return await _dry_run(args, store, out)
        record = await store.load()
        key = api_key(args) or (record.key if record is not None else None)
        if key is None:
            raise UsageError(
                f"no root key: set {API_KEY_ENV} (or --api-key-env VAR), or use a store "
                "that already holds one"
            )
        token = recovery_token(args)
        async with make_client(args, api_key=key, session_token=None) as client:
            rotator = KeyRotator(
                client,
                store=store,
                max_age=args.max_age,
                before_expiry=args.before_expiry,
                check_interval=args.check_interval,
                recovery_token=token,
                recreate_sub_keys=args.recreate_sub_keys,
                sinks=sinks_from_args(args),
                child_max_age=args.child_max_age,
                children=children,
            )
            as_json = args.log_format == "json"

            def report(event: RotationEvent) -> None:
                _report_rotation(event, store, out, as_json=as_json)

            def report_child(event: ChildRotationEvent) -> None:
                report_child_rotation(event, store, out, as_json=as_json)

            rotator.on_rotate(report)
            rotator.on_child_rotate(report_child)
            with stop_on_signals() as stop:
                try:
                    async with _serving_metrics(rotator, client, args):
                        if args.once:
                            return await _check_once(rotator, client, args, stop, out)
                        return await _run_until_stopped(rotator, args, stop)
                finally:
                    await rotator.stop()
    finally:
        await store.aclose()


async def _dry_run(args: argparse.Namespace, store: KeyStore, out: TextIO) -> int:
    """`--dry-run`: what a check would do now, read-only (see `_status`, `_children`)."""
    from cs2cap_account.cli._status import dry_run, print_dry_run, snapshot

    as_json = args.log_format == "json"
    snap = await snapshot(args, store, max_age=args.max_age, before_expiry=args.before_expiry)
    if args.child_max_age is None:
        print_dry_run(snap, out, as_json=as_json)
        return 0
    from cs2cap_account.cli._children import plan_children, plan_json, plan_lines

    # A check rotates a child on its own only once the root key needs nothing.
    root_first = (
        dry_run(snap)["would_rotate"] or bool(snap.journal_open) or not snap.key_authenticates
    )
    plans = await plan_children(args, store, root_first=root_first)
    print_dry_run(snap, out, as_json=as_json, extra=plan_json(plans), lines=plan_lines(plans))
    return 0


@contextlib.asynccontextmanager
async def _serving_metrics(
    rotator: KeyRotator, client: AccountClient, args: argparse.Namespace
) -> AsyncIterator[None]:
    """With `--metrics-port`: serve /metrics, /livez and /readyz while the block runs."""
    if args.metrics_port is None:
        yield
        return
    try:
        from prometheus_client import CollectorRegistry

        from cs2cap_account.metrics import instrument, serve
    except ImportError:
        raise UsageError(
            '--metrics-port needs the Prometheus extra: pip install "cs2cap-account[prometheus]"'
        ) from None
    registry = CollectorRegistry()
    instrument(rotator=rotator, client=client, registry=registry)
    try:
        server = await serve(rotator, registry, host=args.metrics_host, port=args.metrics_port)
    except OSError as exc:
        raise UsageError(f"--metrics-port: cannot listen on {args.metrics_host}:"
                         f"{args.metrics_port} ({exc.strerror or exc})") from None  # fmt: skip
    logger.info("serving /metrics, /livez and /readyz on %s", server.url)
    try:
        yield
    finally:
        await server.aclose()


async def _check_once(
    rotator: KeyRotator,
    client: AccountClient,
    args: argparse.Namespace,
    stop: asyncio.Event,
    out: TextIO,
) -> int:
    as_json = args.log_format == "json"
    failed: list[RotationFailed] = []
    rotated: list[ChildRotationEvent] = []

    def child_failed(event: FailureEvent) -> None:
        if isinstance(event, RotationFailed) and event.stage is RotationStage.CHILDREN:
            failed.append(event)

    rotator.on_failure(child_failed)
    rotator.on_child_rotate(rotated.append)
    finished, event = await unless_stopped(rotator.check(), stop)
    if not finished:
        logger.info("stopped before the check finished")
        return 0
    if event is None:
        info = await client.get_key()
        line = _not_due(info, client.clock.now(), args)
        if as_json:
            line = json.dumps({"event": "not_due", "key_id": info.id, "message": line})
        print(line, file=out, flush=True)
    if failed:  # the check went on with the other children; the command says it failed
        raise RotationError(
            f"{len(failed)} child key rotation(s) did not complete; the first: {failed[0].error}",
            previous_key_id=getattr(failed[0].error, "previous_key_id", None),
        )
    if event is None and args.child_max_age is not None and not rotated:
        line = "No child key was rotated by this check (--dry-run shows each one's age)."
        if as_json:
            line = json.dumps({"event": "children_not_due", "message": line})
        print(line, file=out, flush=True)
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
    finished, _ = await unless_stopped(rotator.check(), stop)
    if finished:
        loop = rotator.start()
        logger.info(
            "rotating the root key (generation %d) when due; checking every %g s; "
            "SIGTERM or Ctrl-C stops",
            rotator.generation,
            args.check_interval,
        )
        # The schedule never ends by itself; if it did, its error is the command's.
        await unless_stopped(loop, stop)
    logger.info("stopping")
    return 0


def _report_rotation(
    event: RotationEvent, store: KeyStore, out: TextIO, *, as_json: bool = False
) -> None:
    """Print one line per new key (redacted), for the log of a long-running `rotate`.

    With `as_json`, the line is one JSON object: the event's ids, generation and reason.
    """
    if as_json:
        entry = {
            "event": "rotated",
            "reason": event.reason,
            "key_id": event.key_id,
            "previous_key_id": event.previous_key_id,
            "generation": event.generation,
            "rotated_at": event.rotated_at.isoformat(),
            "new_key": event.new_key.redacted,
            "sub_keys": sorted(event.sub_keys),
            "sub_key_errors": sorted(event.sub_key_errors),
        }
        print(json.dumps(entry), file=out, flush=True)
        return
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
