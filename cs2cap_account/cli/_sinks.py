"""The key sinks `rotate` and `run` deliver each new key to, from their flags.

`--sink aws-sm:SECRET_ID`, `--sink vault:URL/PATH` (token from `VAULT_TOKEN`),
`--key-file PATH [--key-file-format raw|env|json]`, `--exec CMD`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import urllib.parse
from typing import Final

from cs2cap_account.cli._exit import UsageError
from cs2cap_account.sinks._protocol import KeySink

__all__ = ["VAULT_TOKEN_ENV", "sinks_from_args"]

VAULT_TOKEN_ENV: Final = "VAULT_TOKEN"  # noqa: S105 - the variable's name


def sinks_from_args(args: argparse.Namespace) -> list[KeySink]:
    """The sinks the command line names, in order: `--sink`s, `--key-file`, `--exec`."""
    sinks: list[KeySink] = [_sink(spec) for spec in getattr(args, "sink", None) or ()]
    key_file = getattr(args, "key_file", None)
    if key_file is not None:
        from cs2cap_account.sinks._file import FileSink

        sinks.append(FileSink(key_file, format=args.key_file_format))
    command = getattr(args, "exec_command", None)
    if command is not None:
        from cs2cap_account.sinks._command import CommandSink

        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"--exec: cannot split the command line: {exc}") from None
        if not argv:
            raise UsageError("--exec needs a command")
        sinks.append(CommandSink(argv))
    return sinks


def _sink(spec: str) -> KeySink:
    kind, _, target = spec.partition(":")
    if kind == "aws-sm" and target:
        try:
            import aiobotocore  # noqa: F401 - checked now, not at the first rotation

            from cs2cap_account.sinks._aws import AwsSecretsManagerSink
        except ImportError:
            raise UsageError(
                '--sink aws-sm needs the aws extra: pip install "cs2cap-account[aws]"'
            ) from None
        return AwsSecretsManagerSink(target)
    if kind == "vault" and target:
        return _vault(target)
    raise UsageError(
        f"--sink {spec!r}: expected aws-sm:SECRET_ID or vault:URL/PATH "
        "(e.g. vault:https://vault.internal:8200/cs2cap/prod)"
    )


def _vault(target: str) -> KeySink:
    """`URL/PATH`: the server's address, then the secret's path on the `secret` KV v2 mount."""
    from cs2cap_account.sinks._vault import VaultKVSink

    parts = urllib.parse.urlsplit(target)
    path = parts.path.strip("/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not path:
        raise UsageError(f"--sink vault:{target}: expected vault:URL/PATH")
    token = os.environ.get(VAULT_TOKEN_ENV)
    if not token:
        raise UsageError(f"--sink vault needs a Vault token in {VAULT_TOKEN_ENV}")
    try:
        return VaultKVSink(f"{parts.scheme}://{parts.netloc}", token=token, path=path)
    except ValueError as exc:
        raise UsageError(f"--sink vault:{target}: {exc}") from None
