"""Key sinks: where a `KeyRotator` delivers each new root key (`KeyRotator(sinks=[...])`).

- `AwsSecretsManagerSink`: a new version of an AWS Secrets Manager secret (extra `aws`);
- `VaultKVSink`: a field of a Vault (or OpenBao) KV v2 secret, check-and-set;
- `FileSink`: a file, replaced atomically, mode 0600 (raw, env or JSON);
- `CommandSink`: a command run with the key in its environment;
- `KeySink`: the protocol, for your own (`ChildKeySink`: one that takes child keys too).

Each name is imported on first use, so that an extra's library is imported only by the
sink that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cs2cap_account._lazy import lazy_attributes

if TYPE_CHECKING:
    from cs2cap_account.rotation._event import SinkFailure
    from cs2cap_account.sinks._aws import AwsSecretsManagerSink
    from cs2cap_account.sinks._command import CommandSink
    from cs2cap_account.sinks._file import FileSink
    from cs2cap_account.sinks._protocol import ChildKeySink, KeySink, SinkError
    from cs2cap_account.sinks._vault import VaultKVSink

__all__ = [
    "AwsSecretsManagerSink",
    "ChildKeySink",
    "CommandSink",
    "FileSink",
    "KeySink",
    "SinkError",
    "SinkFailure",
    "VaultKVSink",
]

_WHERE = {
    "AwsSecretsManagerSink": "cs2cap_account.sinks._aws",
    "ChildKeySink": "cs2cap_account.sinks._protocol",
    "CommandSink": "cs2cap_account.sinks._command",
    "FileSink": "cs2cap_account.sinks._file",
    "KeySink": "cs2cap_account.sinks._protocol",
    "SinkError": "cs2cap_account.sinks._protocol",
    "SinkFailure": "cs2cap_account.rotation._event",
    "VaultKVSink": "cs2cap_account.sinks._vault",
}


__getattr__, __dir__ = lazy_attributes(globals(), _WHERE)
