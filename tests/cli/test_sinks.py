"""`cs2cap-account rotate` with --sink, --key-file and --exec: real sinks, real services."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
from sinks.conftest import AWS_CREDENTIALS, Bao, Moto, aws_client, bao_server, moto_server

from cs2cap_account import FileKeyStore
from cs2cap_account.cli import ExitStatus, main
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import assert_no_plaintext, env_for, run

__all__ = ["bao_server", "moto_server"]  # the services' fixtures, used here too

DUMP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"


async def test_rotate_delivers_the_new_key_to_every_sink_it_names(
    fake_cs2cap: FakeCS2CapAPI, tmp_path: Path, moto_server: Moto, bao_server: Bao
) -> None:
    """One due check: the new key lands in the store, the key file (env format, 0600),
    AWS Secrets Manager, Vault, and the --exec command's environment; none of it in
    the output.
    """
    api = fake_cs2cap
    secret = "cs2cap/cli-test"
    async with aws_client(moto_server.url) as admin:
        await admin.create_secret(Name=secret, SecretString="placeholder")
    key_file, seen = tmp_path / "key.env", tmp_path / "exec.json"
    api.age_root_key(dt.timedelta(days=31))
    env = env_for(
        api,
        VAULT_TOKEN=bao_server.token,
        AWS_ENDPOINT_URL=moto_server.url,
        AWS_ACCESS_KEY_ID=AWS_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=AWS_CREDENTIALS["aws_secret_access_key"],
        AWS_DEFAULT_REGION=AWS_CREDENTIALS["region_name"],
    )
    result = await run(
        "rotate", "--once", "--max-age", "30d", "--store", str(tmp_path / "key.json"),
        "--sink", f"aws-sm:{secret}", "--sink", f"vault:{bao_server.url}/cs2cap/cli",
        "--key-file", str(key_file), "--key-file-format", "env",
        "--exec", shlex.join([sys.executable, "-c", DUMP, str(seen)]),
        env=env,
    )  # fmt: skip
    assert result.status == 0, result.stderr
    record = await FileKeyStore(tmp_path / "key.json").load()
    assert record is not None and record.generation == 2
    key = record.key.reveal()
    assert key_file.read_text() == f"CS2C_API_KEY={key}\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(seen.read_text())["CS2C_API_KEY"] == key
    async with aws_client(moto_server.url) as admin:
        current = await admin.get_secret_value(SecretId=secret)
    assert current["SecretString"] == key
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{bao_server.url}/v1/secret/data/cs2cap/cli",
            headers={"X-Vault-Token": bao_server.token},
        ) as response,
    ):
        assert (await response.json())["data"]["data"] == {"api_key": key}
    assert "published generation 2" in result.stderr
    assert_no_plaintext(result, api)


def test_rotate_refuses_a_sink_it_cannot_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown sink, a Vault sink without VAULT_TOKEN, or an empty --exec: usage
    errors (2), before any request.
    """
    monkeypatch.setenv("CS2C_API_KEY", "sk_live_root_" + "k" * 32)
    monkeypatch.setenv("CS2C_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    once = ["rotate", "--once", "--max-age", "30d", "--store", str(tmp_path / "key.json")]
    cases = [
        (["--sink", "s3:bucket"], "expected aws-sm:SECRET_ID or vault:URL/PATH"),
        (["--sink", "vault:https://vault.example:8200/a"], "VAULT_TOKEN"),
        (["--sink", "vault:vault.example"], "expected vault:URL/PATH"),
        (["--exec", "  "], "--exec needs a command"),
        (["--exec", "'unclosed"], "cannot split"),
    ]
    for extra, message in cases:
        assert main([*once, *extra]) == ExitStatus.USAGE, extra
        err = capsys.readouterr().err
        assert message in err, err
