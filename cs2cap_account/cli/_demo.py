"""`cs2cap-account demo`: the SDK against an embedded fake API, one numbered step at a time.

It starts `FakeCS2CapAPI` in this process on 127.0.0.1 (no network, no real key) and
walks through key metadata and rate limits, a scheduled and an on-demand rotation with
callbacks, child keys re-created, a 429 absorbed by backoff, a lost reissue response
recovered with the session token, and one child key rotated on its own schedule while
the root key and the other children stay. Every key is printed redacted, as `SecretKey`
prints.
Imported only when the command runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import TextIO

from cs2cap_account import (
    AccountClient,
    ChildRotationEvent,
    Hooks,
    KeyInfo,
    KeyRotator,
    MemoryKeyStore,
    RetryEvent,
    RotationEvent,
)
from cs2cap_account._session import describe_error
from cs2cap_account.cli._format import ago, rate_limit_text
from cs2cap_account.testing import FakeCS2CapAPI

__all__ = ["demo", "run_demo"]


async def demo(args: argparse.Namespace, out: TextIO) -> int:
    """`cs2cap-account demo`: run the demo, printing to `out`."""
    return await run_demo(out)


async def run_demo(out: TextIO) -> int:  # noqa: PLR0915 - one script, read top to bottom
    """Run the demo, printing to `out`; return the exit status."""
    started = time.monotonic()
    show = _Narrator(out)
    async with FakeCS2CapAPI(tier="quant") as api:
        show.title(
            f"A fake CS2Cap API is running in this process on {api.base_url}:",
            "no network, no real key. Every key is printed redacted, as SecretKey prints it.",
        )

        retries: list[RetryEvent] = []

        def on_retry(event: RetryEvent) -> None:
            retries.append(event)
            show.callback(
                f"on_retry hook: {event.method} {event.path} got {describe_error(event.error)}; "
                f"waiting {event.wait:.1f} s before attempt {event.attempt + 1}"
            )

        client = AccountClient(
            api.root_key, base_url=api.base_url, hooks=Hooks(on_retry=[on_retry])
        )
        async with client:
            # 1. What the key is, and what the rate-limit headers say.
            show.step("Key metadata and rate-limit headers: await client.get_key()")
            info = await client.get_key()
            show.key_info(info, client.api_key, now=client.clock.now())
            show.say(f"client.rate_limit: {rate_limit_text(client.rate_limit)}")

            # 2. The rotator checks the key's age against max_age, as the server reports it.
            show.step("A scheduled rotation: the key is older than max_age")
            store = MemoryKeyStore()
            rotator = KeyRotator(
                client,
                store=store,
                max_age=dt.timedelta(days=30),
                recovery_token=api.session_token,
                recreate_sub_keys=True,
            )
            rotations: list[RotationEvent] = []

            @rotator.on_rotate
            async def hand_over(event: RotationEvent) -> None:
                rotations.append(event)
                show.callback(
                    f"on_rotate callback: generation {event.generation}, new key "
                    f"{event.new_key} (reason: {event.reason}); a service would hand it "
                    "to its workers here"
                )

            old_key = rotator.current_key
            api.age_root_key(dt.timedelta(days=31))
            show.say(
                "The fake now reports the root key as created 31 days ago; max_age is 30 days."
            )
            show.say("await rotator.check()")
            event = await rotator.check()
            assert event is not None
            show.say(f"Rotated {event.previous_key_id} -> {event.key_id} (reason: {event.reason}).")
            show.say(f"The old key {old_key} still works: {_yes_no(api.is_active(old_key))}.")

            # 3. On demand: the same protocol, started by the caller.
            show.step("An on-demand rotation: await rotator.rotate_now()")
            event = await rotator.rotate_now()
            show.say(
                f"Generation {event.generation}: {event.previous_key_id} -> {event.key_id}; "
                f"the client already sends {client.api_key}."
            )

            # 4. A reissue revokes every child key; the rotator makes them again.
            show.step("Child keys re-created after a rotation (recreate_sub_keys=True)")
            bot = api.add_child_key("market-bot", rate_requests_per_minute_override=60)
            board = api.add_child_key("dashboard", quota_requests_per_month_override=50_000)
            show.say(f"Two child keys: market-bot {bot.key} (60 requests/minute),")
            show.say(f"                dashboard {board.key} (50,000 requests/month).")
            event = await rotator.rotate_now()
            for name, child in sorted(event.sub_keys.items()):
                info = child.key_info
                show.say(
                    f"Re-created {name}: {child.key}, overrides kept: "
                    f"{_override('rate', info.rate_requests_per_minute_override, 'minute')}, "
                    f"{_override('quota', info.quota_requests_per_month_override, 'month')}."
                )
            show.say(
                f"The old child keys still work: market-bot {_yes_no(api.is_active(bot.key))}, "
                f"dashboard {_yes_no(api.is_active(board.key))}."
            )

            # 5. A 429 is waited out as the server asks, inside the call.
            show.step("A 429 absorbed by backoff")
            api.faults.rate_limited("get_key", retry_after=1)
            show.say("The fake answers the next GET /account/key with 429 and Retry-After: 1.")
            before = time.monotonic()
            info = await client.get_key()
            show.say(
                f"client.get_key() returned {info.id} after {time.monotonic() - before:.1f} s "
                f"and {len(retries)} retry: the caller saw no error."
            )

            # 6. The reissue happens at the server, but its response (the new key) is lost.
            show.step("A lost reissue response, recovered with the session token")
            api.faults.drop_after_commit("reissue_key")
            show.say("The fake reissues the next key, then drops the connection before answering.")
            lost_from = rotator.current_key
            event = await rotator.rotate_now()
            show.say(
                f"The client proved the reissue happened (the old key {lost_from} now answers "
                "401), so the rotator reissued again with the session token."
            )
            show.say(
                f"Recoveries: {rotator.recoveries}. Generation {event.generation}, key "
                f"{event.new_key}, works: {_yes_no(api.is_active(event.new_key))}; child keys "
                f"re-created: {', '.join(sorted(event.sub_keys)) or 'none'}."
            )
            await rotator.stop()

            # 7. One child key on its own schedule: reissued alone, the root key untouched.
            show.step("A child key rotated on its own schedule: child_max_age")
            bot = api.add_child_key("bot")
            api.age_child_key(bot.key_id, dt.timedelta(days=8))
            show.say(
                f"A child key bot {bot.key} was created 8 days ago; dashboard, re-created "
                "in the store at step 6, is new. child_max_age is 7 days."
            )
            child_rotator = KeyRotator(
                client,
                store=store,
                child_max_age=dt.timedelta(days=7),
                children=["bot", "dashboard"],
            )
            child_events: list[ChildRotationEvent] = []

            @child_rotator.on_child_rotate
            def handed_on(event: ChildRotationEvent) -> None:
                child_events.append(event)
                show.callback(
                    f"on_child_rotate callback: {event.name}, new key {event.new_key} "
                    f"(reason: {event.reason}); its one user would get it here"
                )

            kept = await store.load()
            root_reissues = api.reissues
            show.say(
                "await KeyRotator(client, store=store, child_max_age=timedelta(days=7), "
                'children=["bot", "dashboard"]).check()'
            )
            await child_rotator.check()
            after = await store.load()
            assert kept is not None
            assert after is not None
            [bot_event] = child_events
            show.say(
                f"Rotated the child bot {bot_event.previous_key_id} -> {bot_event.key_id}; "
                f"the old bot key still works: {_yes_no(api.is_active(bot.key))}."
            )
            show.say(
                f"The root key is still {after.key_id} (unchanged: "
                f"{_yes_no(after.key_id == kept.key_id)}); root reissues in this step: "
                f"{api.reissues - root_reissues}."
            )
            other = await client.get_key(key=child_rotator.child_keys["dashboard"])
            show.say(
                'client.get_key(key=child_rotator.child_keys["dashboard"]): '
                f"{other.name} {other.id} still authenticates, active: "
                f"{_yes_no(other.is_active)}."
            )
            await child_rotator.stop()

        show.summary(
            [
                ("reissues at the server", f"{api.reissues} (one of them lost and recovered)"),
                (
                    "rotations announced",
                    f"{len(rotations)} (generations 2 to {rotator.generation})",
                ),
                ("recoveries", str(rotator.recoveries)),
                (
                    "child reissues",
                    f"{sum(api.child_reissues.values())} (bot, on its own schedule)",
                ),
                ("429s absorbed", str(len(retries))),
                ("took", f"{time.monotonic() - started:.1f} s"),
            ]
        )
    return 0


def _override(what: str, value: int | None, per: str) -> str:
    return f"{what} {value:,} requests/{per}" if value is not None else f"no {what} override"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


class _Narrator:
    """Prints the demo: numbered steps, indented lines, callbacks marked with `->`."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._steps = 0

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def title(self, *lines: str) -> None:
        self._print("cs2cap-account demo")
        for line in lines:
            self._print(line)

    def step(self, text: str) -> None:
        self._steps += 1
        self._print(f"\n{self._steps}. {text}")

    def say(self, text: str) -> None:
        self._print(f"   {text}")

    def callback(self, text: str) -> None:
        self._print(f"   -> {text}")

    def key_info(self, info: KeyInfo, key: object, *, now: dt.datetime) -> None:
        self.say(f"id {info.id}, key {key}, active: {_yes_no(info.is_active)}")
        self.say(f"created {ago(info.created_at, now)}")
        self.say(
            f"limits: {info.effective_rate_requests_per_minute:,} requests/minute, "
            f"{info.effective_quota_requests_per_month:,} requests/month"
        )

    def summary(self, rows: list[tuple[str, str]]) -> None:
        self._print("\nSummary")
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            self.say(f"{label:<{width}}  {value}")
