"""Reliability tests: print what they counted at the end of the run."""

from __future__ import annotations

import pytest

from ._profile import PROFILE, STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the soak, crash, fuzz, load and secret-hygiene numbers of this run."""
    lines = STATS.lines()
    if lines:
        terminalreporter.section(f"reliability ({PROFILE.name} profile)")
        for line in lines:
            terminalreporter.write_line(line)
