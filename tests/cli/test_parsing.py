"""The command line's pieces in-process: durations, argument checks, error mapping, text."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TextIO

import pytest

from cs2cap_account import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    KeyLostError,
    PermissionDeniedError,
    RateLimitError,
    RateLimitInfo,
    ReissueOutcomeUnknownError,
    RotationError,
    StoreError,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account import _cli_commands as commands
from cs2cap_account._cli_format import ago, rate_limit_text
from cs2cap_account.cli import ExitStatus, exit_status_for, main, parse_duration

NOW = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.timezone.utc)


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


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (AuthenticationError(status_code=401, method="GET", path="/k"), ExitStatus.AUTH),
        (PermissionDeniedError(status_code=403, method="GET", path="/k"), ExitStatus.PERMISSION),
        (RateLimitError(method="GET", path="/k"), ExitStatus.RATE_LIMIT),
        (APIConnectionError("refused"), ExitStatus.NETWORK),
        (APITimeoutError("slow"), ExitStatus.NETWORK),
        (SubKeyOutcomeUnknownError("maybe"), ExitStatus.NETWORK),
        (ReissueOutcomeUnknownError("maybe"), ExitStatus.ROTATION),
        (KeyLostError("lost", previous_key_id="k"), ExitStatus.ROTATION),
        (RotationError("stuck"), ExitStatus.ROTATION),
        (InternalServerError(status_code=502, method="GET", path="/k"), ExitStatus.ERROR),
        (StoreError("disk"), ExitStatus.ERROR),
        (commands.UsageError("no"), ExitStatus.USAGE),
        (commands.Declined("no"), ExitStatus.ERROR),
    ],
)
def test_each_error_maps_to_its_exit_status(error: BaseException, status: ExitStatus) -> None:
    """A lost or unknown reissue is a rotation failure, though it is also a connection one."""
    assert exit_status_for(error) is status


def test_an_unexpected_error_is_still_one_line_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug in a command: status 1, its type and redacted message, no traceback."""
    key = "sk_live_root_" + "B" * 32

    async def broken(args: argparse.Namespace, out: TextIO) -> int:
        raise RuntimeError(f"cannot frobnicate {key}\nsecond line")

    monkeypatch.setattr(commands, "key_show", broken)
    assert main(["key", "show"]) == ExitStatus.ERROR
    err = capsys.readouterr().err
    assert (
        err == "cs2cap-account: error: unexpected RuntimeError: cannot frobnicate "
        "sk_live_root_…BBBB second line\n"
    )


def test_ctrl_c_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted one-shot command says so and exits 130."""

    async def interrupted(args: argparse.Namespace, out: TextIO) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "sub_keys_list", interrupted)
    assert main(["sub-keys", "list"]) == ExitStatus.INTERRUPTED
    assert capsys.readouterr().err == "cs2cap-account: interrupted\n"


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["key", "show", "--api-key-env", "MY_KEY"], "MY_KEY is not set"),
        (
            {"CS2C_API_KEY": "sk_live_root_" + "k" * 32, "CS2C_API_BASE": "http://api.example/v1"},
            ["key", "show"],
            "refusing to send an API key over plain http to api.example",
        ),
        ({}, ["rotate", "--once", "--max-age", "30d", "--store", "{tmp}/k.json"], "no root key"),
        (
            {"CS2C_API_KEY": "sk_live_root_" + "k" * 32},
            ["rotate", "--once", "--max-age", "1d", "--redis", "mysql://nope"],
            "--redis:",
        ),
    ],
)
def test_configuration_problems_are_usage_errors(
    env: dict[str, str],
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unset key variable, an insecure base URL, no key anywhere, a bad Redis URL."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main([arg.format(tmp=tmp_path) for arg in args]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


def test_ages_read_both_ways() -> None:
    """Past and future moments, from seconds to days, singular and plural."""
    assert ago(NOW, NOW).endswith("(just now)")
    assert ago(NOW + dt.timedelta(seconds=30), NOW).endswith("(in under a minute)")
    assert ago(NOW - dt.timedelta(minutes=1), NOW).endswith("(1 minute ago)")
    assert ago(NOW - dt.timedelta(hours=5), NOW).endswith("(5 hours ago)")
    assert ago(NOW + dt.timedelta(days=29, hours=23), NOW) == (
        "2026-03-02T11:00:00+00:00 (in 29 days)"
    )


def test_rate_limit_text_says_what_the_headers_said() -> None:
    """Only the parts the server sent; a sentence when it sent nothing."""
    assert rate_limit_text(None) == "the server sent no rate-limit headers"
    assert rate_limit_text(RateLimitInfo()) == "the server sent no rate-limit headers"
    assert rate_limit_text(RateLimitInfo(limit=60, retry_after=2.5)) == (
        "limit 60 requests/minute; retry after 2.5 s"
    )
    full = RateLimitInfo(limit=60, remaining=0, reset_at=NOW, tier="pro")
    assert rate_limit_text(full) == (
        "0 of 60 requests left in this minute; window resets 2026-01-31T12:00:00+00:00; tier pro"
    )
