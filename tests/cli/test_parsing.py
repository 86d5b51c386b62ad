"""The argument parser in-process: durations and argument checks."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata

import pytest

from cs2cap_account.cli import ExitStatus, main, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86_400), ("12h", 43_200), ("15m", 900), ("90s", 90), ("45", 45), ("1.5h", 5_400)],
)
def test_durations_take_a_number_and_a_unit(text: str, seconds: float) -> None:
    """d, h, m and s (or none, for seconds), whole or fractional."""
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0s", "-1d", "3w", "d", "1d2h", "soon"])
def test_other_durations_are_refused(text: str) -> None:
    """Zero, negative, unknown units and compound forms are argument errors."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize(
    "args",
    [
        ["sub-keys", "create", "--name", "x", "--rate-override", "0"],
        ["sub-keys", "create", "--name", "x", "--quota-override", "lots"],
        ["key", "show", "--max-retries", "-1"],
        ["key", "show", "--max-retries", "two"],
        ["rotate", "--max-age", "30d", "--store", "k.json", "--check-interval", "0"],
        ["sub-keys", "update", "id", "--rate-override", "5", "--clear-rate-override"],
        ["sub-keys", "create"],
        ["key"],
    ],
)
def test_bad_arguments_are_one_line_and_status_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Errors from argparse come out as one line ending in a pointer to --help."""
    assert main(args) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cs2cap-account") and err.endswith("(see --help)\n")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints the program's name and the version the package was built with."""
    assert main(["--version"]) == 0
    version = importlib.metadata.version("cs2cap-account")
    assert capsys.readouterr().out == f"cs2cap-account {version}\n"
