"""`cs2cap-account --help` against `python -c "import aiohttp"`: wall time, side by side.

    python tests/benchmarks/startup.py [--rounds 21]

(also row 4c of `tests/benchmarks/run.py`, i.e. `nox -s bench`). Each round starts both
commands once, each in a fresh interpreter, in alternating order (A B, then B A, ...);
round 0 warms the disk cache and the bytecode caches and is not counted. It prints the
median wall time of each and the median of the per-round ratios, against the target of
0.3: `--help` is answered by the parser alone, without importing aiohttp. It asserts
nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

__all__ = ["TARGET", "Startup", "help_command", "measure"]

TARGET: Final = 0.3


class Startup(NamedTuple):
    """Wall seconds per counted round: `--help`, and `import aiohttp`."""

    help: list[float]
    aiohttp: list[float]

    @property
    def ratio(self) -> float:
        """The median of the per-round ratios, `--help` over `import aiohttp`."""
        return statistics.median(a / b for a, b in zip(self.help, self.aiohttp, strict=True))


def help_command() -> list[str]:
    """The installed console script, as a user runs it; `python -m cs2cap_account` if none."""
    script = Path(sys.executable).with_name("cs2cap-account")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("cs2cap-account")
    if found:
        return [found, "--help"]
    return [sys.executable, "-m", "cs2cap_account", "--help"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Bytecode caches as users have them: a cold compile would compare compilers.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _wall(command: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    return time.perf_counter() - started


def measure(*, rounds: int) -> Startup:
    """`rounds` counted rounds (plus one warm-up), the order alternating each round."""
    env = _env()
    commands = {
        "help": help_command(),
        "aiohttp": [sys.executable, "-c", "import aiohttp"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for index in range(rounds + 1):
        order = list(commands) if index % 2 == 0 else list(reversed(commands))
        for name in order:
            seconds = _wall(commands[name], env)
            if index > 0:
                walls[name].append(seconds)
    return Startup(walls["help"], walls["aiohttp"])


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="counted rounds (21)")
    args = parser.parse_args(argv)
    result = measure(rounds=args.rounds)
    help_ms = statistics.median(result.help) * 1000
    aiohttp_ms = statistics.median(result.aiohttp) * 1000
    print(f"{' '.join(help_command())}: median {help_ms:.0f} ms over {args.rounds} runs")
    print(f'{sys.executable} -c "import aiohttp": median {aiohttp_ms:.0f} ms')
    print(
        f"ratio (median of per-round ratios): {result.ratio:.2f}x "
        f"(target <= {TARGET}x: {'met' if result.ratio <= TARGET else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
