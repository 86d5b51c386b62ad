"""Child keys on their own schedule, across a fleet: reissues per child, recoveries, cost.

    python tests/benchmarks/child_fleet.py [--rotators N] [--children N] [--rounds N]
                                           [--drop-every K] [--markdown FILE]

(also run by `nox -s bench`). Eight rotators (each its own client and `RedisKeyStore`,
on a redis-server of its own) share a store holding the root key and ten children. Each
round moves virtual time past `child_max_age`, then every rotator checks at once, and
once more so that every process has adopted what the others rotated. Every `drop_every`
th child reissue has its answer dropped after it took effect, so that the rotators must
recover it with the root key. It reports, per round, child reissues per child, root
reissues, recoveries, requests per child rotation, and the API requests of the adopting
processes. It asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale import redis_server

from cs2cap_account import (
    AccountClient,
    ChildRotationEvent,
    FakeClock,
    KeyRotator,
    RedisKeyStore,
)
from cs2cap_account.testing import FakeCS2CapAPI

WEEK = dt.timedelta(days=7)


async def measure(
    rotators: int, children: int, rounds: int, drop_every: int
) -> list[dict[str, float]]:
    """Run the rounds; one row of numbers per round."""
    clock = FakeClock(wall_start=dt.datetime.now(dt.timezone.utc))
    rows: list[dict[str, float]] = []
    with redis_server() as url:
        async with (
            FakeCS2CapAPI(rate_limits=False, clock=clock.monotonic, wall_clock=clock.now) as api,
            contextlib.AsyncExitStack() as stack,
        ):
            names = [f"child-{i}" for i in range(children)]
            for name in names:
                api.add_child_key(name)
            stores = [RedisKeyStore(url, name="bench-children") for _ in range(rotators)]
            for store in stores:
                stack.push_async_callback(store.aclose)
            fleet: list[KeyRotator] = []
            told: Counter[str] = Counter()
            for index, store in enumerate(stores):
                client = await stack.enter_async_context(
                    AccountClient(api.root_key, base_url=api.base_url, clock=clock)
                )
                if index == 0:
                    await KeyRotator(client, store=store, recreate_sub_keys=True).rotate_now()
                rotator = KeyRotator(client, store=store, child_max_age=WEEK)

                def tell(event: ChildRotationEvent) -> None:
                    told[event.reason] += 1

                rotator.on_child_rotate(tell)
                fleet.append(rotator)
            await asyncio.gather(*(rotator.check() for rotator in fleet))
            for _ in range(rounds):
                clock.advance(8 * 86_400)
                reissues_before = Counter(api.child_reissues)
                roots_before = api.reissues
                requests_before = sum(api.requests.values())
                told.clear()
                if drop_every:
                    api.faults.drop_after_commit("reissue_sub_key", times=children // drop_every)
                await asyncio.gather(*(rotator.check() for rotator in fleet))
                requests_rotating = sum(api.requests.values()) - requests_before
                await asyncio.gather(*(rotator.check() for rotator in fleet))
                adopting = sum(api.requests.values()) - requests_before - requests_rotating
                per_child = [api.child_reissues[n] - reissues_before[n] for n in names]
                record = await stores[0].load()
                assert record is not None
                rows.append(
                    {
                        "children rotated": sum(1 for n in per_child if n),
                        "reissues per child (max)": max(per_child),
                        "reissues per child (min)": min(per_child),
                        "recoveries": sum(per_child) - children,
                        "root reissues": api.reissues - roots_before,
                        "requests per child rotation": requests_rotating / children,
                        "requests of the second checks": adopting,
                        "events told (all processes)": sum(told.values()),
                        "journals left open": len(record.child_rotations),
                    }
                )
    return rows


def _table(rows: list[dict[str, float]]) -> str:
    keys = list(rows[0])
    lines = ["| round | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for index, row in enumerate(rows, 1):
        cells = [f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        lines.append(f"| {index} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Parse the options, measure, print the table (and write it as Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotators", type=int, default=8)
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drop-every", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.rotators, args.children, args.rounds, args.drop_every))
    table = _table(rows)
    print(
        f"{args.rotators} rotators on one redis-server, {args.children} children, "
        f"child_max_age 7 days, every {args.drop_every}th child reissue's answer dropped\n"
    )
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
