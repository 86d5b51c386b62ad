"""Fixtures shared by every test directory: a clean environment and virtual time."""

from __future__ import annotations

import pytest

from cs2cap_account import FakeClock

# Loaded here, not through the entry point (see pyproject.toml), for coverage's sake.
pytest_plugins = ["cs2cap_account.testing.plugin"]


@pytest.fixture(autouse=True)
def _no_cs2cap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's CS2C_API_KEY / CS2C_API_BASE out of every test."""
    monkeypatch.delenv("CS2C_API_KEY", raising=False)
    monkeypatch.delenv("CS2C_API_BASE", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    """A virtual clock: sleeps return at once and are recorded in `clock.sleeps`."""
    return FakeClock()
