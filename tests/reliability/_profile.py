"""How hard the reliability tests push, and what they counted.

The default profile keeps the normal test run fast. Setting `CS2CAP_SOAK=1` (which
`nox -s soak` does) selects the long profile: more rotations, more seeds, the full load
test and more fuzzing examples. To replay a failed soak run, set `CS2CAP_SOAK_SEEDS` to
the seed its assertion printed (and `CS2CAP_SOAK_ROTATIONS` to stop sooner or later).
`STATS` collects the numbers each test reports; the terminal summary prints them (see
`conftest.py` in this directory).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Final

import attrs

__all__ = ["PROFILE", "SOAK_ENV", "STATS", "Profile", "Stats"]

SOAK_ENV: Final = "CS2CAP_SOAK"


@attrs.frozen
class Profile:
    """The sizes of one run."""

    name: str
    rotations: int
    seeds: tuple[int, ...]
    load_calls: int
    load_concurrency: int
    fuzz_examples: int
    killed_mid_request: int
    model_seeds: tuple[int, ...] = ()
    model_steps: int = 0


_DEFAULT: Final = Profile(
    name="default",
    rotations=300,
    seeds=(20260301,),
    load_calls=5_000,
    load_concurrency=200,
    fuzz_examples=150,
    killed_mid_request=3,
    model_seeds=(1, 2, 3, 4, 5, 6, 7, 8),
    model_steps=300,
)
_SOAK: Final = Profile(
    name="soak",
    rotations=3_000,
    seeds=(20260301, 11, 4242, 90210, 7),
    load_calls=20_000,
    load_concurrency=200,
    fuzz_examples=2_000,
    killed_mid_request=12,
    model_seeds=tuple(range(101, 141)),
    model_steps=1_500,
)


def _chosen() -> Profile:
    """The profile `CS2CAP_SOAK` selects, with `CS2CAP_SOAK_SEEDS` (comma-separated) and
    `CS2CAP_SOAK_ROTATIONS` overriding its seeds and rotations, to replay a failure.
    """
    profile = _SOAK if os.environ.get(SOAK_ENV) == "1" else _DEFAULT
    seeds = os.environ.get(f"{SOAK_ENV}_SEEDS")
    if seeds:
        profile = attrs.evolve(profile, seeds=tuple(int(seed) for seed in seeds.split(",")))
    rotations = os.environ.get(f"{SOAK_ENV}_ROTATIONS")
    if rotations:
        profile = attrs.evolve(profile, rotations=int(rotations))
    return profile


PROFILE: Final = _chosen()


@attrs.define
class Stats:
    """Numbers the reliability tests report at the end of the run."""

    rotations: int = 0
    rotations_effective: int = 0
    rotation_errors: Counter[str] = attrs.field(factory=Counter)
    recoveries: int = 0
    reissues: int = 0
    faults: Counter[str] = attrs.field(factory=Counter)
    ordinary_calls: Counter[str] = attrs.field(factory=Counter)
    late_handlers_awaited: int = 0
    crashes: Counter[str] = attrs.field(factory=Counter)
    crash_reissues: Counter[str] = attrs.field(factory=Counter)
    fuzz_examples: Counter[str] = attrs.field(factory=Counter)
    load: list[str] = attrs.field(factory=list)
    tests_audited: int = 0
    log_records_audited: int = 0
    exceptions_audited: int = 0
    locals_audited: int = 0
    leaks: int = 0
    model_steps: int = 0
    model_runs: int = 0
    model_faults: Counter[str] = attrs.field(factory=Counter)
    model_outcomes: Counter[str] = attrs.field(factory=Counter)
    model_broken: list[str] = attrs.field(factory=list)

    def lines(self) -> list[str]:
        """The summary, one fact a line; empty if no reliability test ran."""
        out = []
        if self.rotations:
            out.append(
                f"chaos soak: {self.rotations} rotations asked, {self.rotations_effective} took "
                f"effect, {self.reissues} reissues, {self.recoveries} recovered with the token; "
                f"rotation errors {dict(self.rotation_errors)}"
            )
            out.append(f"faults injected by kind: {dict(sorted(self.faults.items()))}")
            out.append(f"ordinary calls under chaos: {dict(sorted(self.ordinary_calls.items()))}")
            out.append(f"late server handlers awaited at checkpoints: {self.late_handlers_awaited}")
        if self.crashes:
            out.append(f"crashes recovered, by step: {dict(self.crashes)}")
            out.append(f"reissues per crash scenario: {dict(self.crash_reissues)}")
        if self.fuzz_examples:
            total = sum(self.fuzz_examples.values())
            out.append(f"fuzz examples run: {total} {dict(sorted(self.fuzz_examples.items()))}")
        out.extend(self.load)
        if self.model_runs:
            out.append(
                f"model-based fault test: {self.model_steps} steps in {self.model_runs} runs; "
                f"faults injected by kind: {dict(sorted(self.model_faults.items()))}"
            )
            out.append(
                f"model-based fault test outcomes: {dict(sorted(self.model_outcomes.items()))}"
            )
            out.extend(f"model-based fault test broke: {line}" for line in self.model_broken)
        if self.tests_audited:
            out.append(
                f"secret hygiene: {self.leaks} leaks in {self.tests_audited} tests "
                f"({self.log_records_audited} log records, {self.exceptions_audited} "
                f"exceptions with {self.locals_audited} captured frame locals audited)"
            )
        return out


STATS: Final = Stats()
