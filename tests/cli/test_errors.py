"""One line on stderr and an exit status per kind of failure, never a traceback or a key."""

from __future__ import annotations

import argparse
import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

import pytest

from cs2cap_account import (
    AccountClient,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    KeyLostError,
    PermissionDeniedError,
    RateLimitError,
    ReissueOutcomeUnknownError,
    RotationError,
    StoreError,
    SubKeyOutcomeUnknownError,
)
from cs2cap_account.cli import ExitStatus, _key, _sub_keys, build_parser, main
from cs2cap_account.cli._exit import Declined, UsageError
from cs2cap_account.cli._run import exit_status_for
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Result, assert_no_plaintext, env_for, run


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def lonely() -> AsyncIterator[FakeCS2CapAPI]:
    """A second fake, for a case that would disturb the others' (a reissue revokes all)."""
    async with FakeCS2CapAPI() as api:
        yield api


async def test_each_kind_of_failure_has_its_exit_status(
    fake_cs2cap: FakeCS2CapAPI, lonely: FakeCS2CapAPI
) -> None:
    """Revoked key, child key on a management route, a 429 too long to wait, no server,
    bad arguments, a reissue without --yes off a terminal, a lost reissue response and
    another API error: each its own status, in one line on stderr.
    """
    api = fake_cs2cap
    revoked = api.root_key
    async with AccountClient(revoked, base_url=api.base_url) as client:
        await client.reissue_key()
    child = api.add_child_key("bot")
    api.faults.rate_limited("get_key", retry_after=3600)  # only `key show` calls get_key
    lonely.faults.drop_after_commit("reissue_key")
    no_server = env_for(api) | {"CS2C_API_BASE": f"http://127.0.0.1:{closed_port()}/v1"}
    cases: dict[str, tuple[ExitStatus, str, list[str], dict[str, str]]] = {
        "revoked key": (
            ExitStatus.AUTH,
            "HTTP 401 AUTH_API_KEY_REVOKED",
            ["sub-keys", "list"],
            env_for(api, key=revoked),
        ),
        "child key on a management route": (
            ExitStatus.PERMISSION,
            "HTTP 403 FORBIDDEN",
            ["sub-keys", "list"],
            env_for(api, key=child.key),
        ),
        "429 with a long Retry-After": (
            ExitStatus.RATE_LIMIT,
            "HTTP 429 RATE_LIMIT_EXCEEDED: Too Many Requests (retry after 3600 s)",
            ["key", "show"],
            env_for(api),
        ),
        "closed port": (
            ExitStatus.NETWORK,
            f"127.0.0.1:{no_server['CS2C_API_BASE'].split(':')[2].split('/')[0]}",
            ["key", "show", "--max-retries", "0"],
            no_server,
        ),
        "bad argument": (
            ExitStatus.USAGE,
            "argument --max-age: not a duration: 'soon'",
            ["rotate", "--max-age", "soon", "--store", "key.json"],
            env_for(api),
        ),
        "no credential": (
            ExitStatus.USAGE,
            "no credential: set CS2C_API_KEY",
            ["key", "show"],
            env_for(api, use_root_key=False),
        ),
        "nothing to update": (
            ExitStatus.USAGE,
            "nothing to change",
            ["sub-keys", "update", child.key_id],
            env_for(api),
        ),
        "reissue without --yes or a terminal": (
            ExitStatus.USAGE,
            "stdin is not a terminal to confirm on, so pass --yes",
            ["key", "reissue"],
            env_for(api),
        ),
        "lost reissue response": (
            ExitStatus.ROTATION,
            "the response holding the new key was lost",
            ["key", "reissue", "--yes", "--api-key-env", "ROOT"],
            env_for(lonely, use_root_key=False, ROOT=lonely.root_key.reveal()),
        ),
        "another API error": (
            ExitStatus.ERROR,
            "HTTP 404 NOT_FOUND",
            ["sub-keys", "get", str(uuid.uuid4())],
            env_for(api),
        ),
    }
    results: list[Result] = await asyncio.gather(
        *(run(*args, env=env) for _, _, args, env in cases.values())
    )
    for (name, (status, message, _, _)), result in zip(cases.items(), results, strict=True):
        assert (name, result.status) == (name, status), result.stderr
        assert result.error_line.startswith("cs2cap-account"), name
        assert message in result.error_line, name
        assert "Traceback" not in result.output, name
        assert result.stdout == "", name
        assert_no_plaintext(result, api)
        assert_no_plaintext(result, lonely)
    assert api.requests["update_sub_key"] == 0
    assert (api.reissues, lonely.reissues) == (1, 1)
    lost = dict(zip(cases, results, strict=True))["lost reissue response"]
    assert "set CS2C_SESSION_TOKEN and run `cs2cap-account key reissue`" in lost.stderr


async def test_verbose_shows_the_sdks_logs_without_keys(fake_cs2cap: FakeCS2CapAPI) -> None:
    """`--verbose` sends the SDK's DEBUG request log to stderr, with no key in it."""
    result = await run("sub-keys", "list", "--verbose", env=env_for(fake_cs2cap))
    assert result.status == 0, result.stderr
    assert "DEBUG cs2cap_account: GET /account/sub-keys -> 200 (attempt 1," in result.stderr
    assert_no_plaintext(result, fake_cs2cap)


def test_verbose_goes_before_or_after_the_command() -> None:
    """`-v` is accepted at the top level and on each command; absent, it is off."""
    parser = build_parser()
    assert parser.parse_args(["-v", "key", "show"]).verbose is True
    assert parser.parse_args(["key", "show", "-v"]).verbose is True
    assert parser.parse_args(["sub-keys", "list", "--verbose"]).verbose is True
    assert parser.parse_args(["key", "show"]).verbose is False


def test_help_documents_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    """The top-level `--help` epilog lists each exit status and the environment."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status:" in out
    for status in ExitStatus:
        assert f"\n  {status.value:<3}  " in out, status
    for variable in ("CS2C_API_KEY", "CS2C_SESSION_TOKEN", "CS2C_API_BASE"):
        assert variable in out
    assert main(["sub-keys", "update", "--help"]) == 0
    assert "exit status:" in capsys.readouterr().out


def test_a_key_pasted_as_an_argument_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors are one line, and redact a key the user put in the wrong place."""
    key = "sk_live_root_" + "Q" * 32
    assert main(["key", "show", key]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert key not in err
    assert "sk_live_root_…QQQQ" in err
    assert len(err.splitlines()) == 1


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
        (UsageError("no"), ExitStatus.USAGE),
        (Declined("no"), ExitStatus.ERROR),
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

    monkeypatch.setattr(_key, "key_show", broken)
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

    monkeypatch.setattr(_sub_keys, "sub_keys_list", interrupted)
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
