"""Development sessions: `nox` runs lint, typecheck and tests."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (with branch coverage) against the installed package."""
    session.install(".[test,redis,crypto,aws,httpx,cs2cap,services]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint rules and formatting."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy --strict over the package and the tests."""
    session.install("-e", ".[test,redis,crypto,aws,httpx,cs2cap]", "mypy>=1.10", "nox")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs-material, mkdocstrings) with --strict into site/."""
    session.install(".[docs]")
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def soak(session: nox.Session) -> None:
    """Reliability tests, long profile: more chaos rotations and seeds, 20,000 load calls.

    It also kills more rotators mid-request and fuzzes with more examples (CS2CAP_SOAK=1).
    Replay a soak seed with CS2CAP_SOAK_SEEDS=<seed> (e.g. `nox -s soak -- -k soak`).
    """
    session.install(".[test,redis,crypto]")
    session.run(
        "pytest",
        "tests/reliability",
        "--no-cov",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"CS2CAP_SOAK": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against raw aiohttp, httpx and the official SDK, and rotation at scale.

    Then what a Redis store's save costs and how fast a follower hears of it, on one
    server, a Cluster and a Sentinel set of real redis-servers (a second table).

    The fleet workloads (7, 8, 10) start their own redis-server (`redis-server` on PATH).
    Pass the script's options after `--`, e.g. `nox -s bench -- --quick` or
    `nox -s bench -- --only 7,8 --markdown bench.md`.
    """
    session.install(".[bench,redis,aws,services]")
    session.run("python", "tests/benchmarks/run.py", *session.posargs)
    session.install(".[redis]")
    session.run("python", "tests/benchmarks/redis_topologies.py")
    # Latency from the save of a new key to each sink (moto, OpenBao, a file, a command).
    session.run("python", "tests/benchmarks/sink_latency.py")
    # Child keys on their own schedule across eight rotators: reissues per child, recoveries.
    session.run("python", "tests/benchmarks/child_fleet.py")
