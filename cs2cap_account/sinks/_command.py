"""`CommandSink`: run a command with the new key in its environment (never in its argv)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Final

from cs2cap_account._constants import API_KEY_ENV
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.sinks._protocol import SinkError

__all__ = ["CommandSink", "command_env"]

KEY_ID_ENV: Final = "CS2C_KEY_ID"
GENERATION_ENV: Final = "CS2C_KEY_GENERATION"


def command_env(
    base: Mapping[str, str], event: RotationEvent, env_var: str = API_KEY_ENV
) -> dict[str, str]:
    """`base` plus the key in `env_var`, its id and its generation (pure)."""
    return {
        **base,
        env_var: event.new_key.reveal(),
        KEY_ID_ENV: event.key_id,
        GENERATION_ENV: str(event.generation),
    }


class CommandSink:
    """Runs `argv` once per new key, with the key in `env_var` (`CS2C_API_KEY`).

    The key's id is in `CS2C_KEY_ID` and its generation in `CS2C_KEY_GENERATION`; the key
    never goes on the command line, where `ps` would show it. A non-zero exit status is a
    failure (retried with backoff, then reported), and so is a command still running
    after `timeout` seconds, which is killed. The command inherits stdout and stderr. It
    must be idempotent: a failed or interrupted publish runs it again with the same key.
    """

    def __init__(
        self, argv: Sequence[str], *, env_var: str = API_KEY_ENV, timeout: float = 30.0
    ) -> None:
        if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
            raise TypeError("argv must be a list of str (the command and its arguments)")
        if not argv or not all(isinstance(part, str) for part in argv):
            raise ValueError("argv must be a non-empty list of str")
        if not isinstance(env_var, str) or not env_var.isidentifier():
            raise ValueError(f"env_var must be an environment variable name, not {env_var!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.argv: tuple[str, ...] = tuple(argv)
        self.env_var = env_var
        self.timeout = float(timeout)
        self.name = f"exec:{self.argv[0]}"

    def __repr__(self) -> str:
        return f"CommandSink({list(self.argv)!r}, env_var={self.env_var!r})"

    async def publish(self, event: RotationEvent) -> None:
        """Run the command with `event`'s key; `SinkError` if it fails or outlives `timeout`."""
        if any(event.new_key.reveal() in part for part in self.argv):
            raise SinkError(f"refusing to run {self.argv[0]}: its arguments hold the key")
        env = command_env(os.environ, event, self.env_var)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv, env=env, stdin=asyncio.subprocess.DEVNULL
            )
        except OSError as exc:
            raise SinkError(f"cannot run {self.argv[0]}: {exc.strerror}") from exc
        finally:
            del env
        try:
            status = await asyncio.wait_for(process.wait(), self.timeout)
        except asyncio.TimeoutError:
            await _kill(process)
            raise SinkError(
                f"{self.argv[0]} did not finish within {self.timeout:g} s; it was killed"
            ) from None
        except BaseException:  # cancelled: the command does not outlive its publish
            await _kill(process)
            raise
        if status != 0:
            raise SinkError(f"{self.argv[0]} exited with status {status}")


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await asyncio.shield(process.wait())
