"""`cs2cap-account run -- CMD ARGS...`: run a command with the current key, and follow it.

CMD gets the root key in `CS2C_API_KEY` (never in its argv). A `KeyRotator` follows the
store (`--store PATH` or `--redis URL`): on each new key CMD is restarted with it, or sent
a signal (`--on-rotate signal:HUP`) if it re-reads the key itself. SIGINT and SIGTERM are
forwarded to CMD; `run` exits with CMD's status (128 + N if a signal N ended it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator, Sequence
from typing import Final, TextIO

import attrs

from cs2cap_account._constants import API_KEY_ENV
from cs2cap_account._secret import SecretKey
from cs2cap_account.cli._common import api_key, make_client, open_store
from cs2cap_account.cli._exit import UsageError
from cs2cap_account.rotation import KeyRotator, RotationEvent

__all__ = ["OnRotate", "exit_status", "parse_on_rotate", "run"]

logger: Final = logging.getLogger("cs2cap_account.cli")

# How long CMD has to exit after SIGTERM when it is restarted, before it is killed.
STOP_GRACE: Final = 10.0


@attrs.frozen
class OnRotate:
    """What a new key does to CMD: restart it, or send it `signum`."""

    signum: signal.Signals | None = None

    @property
    def restarts(self) -> bool:
        """Whether CMD is restarted (rather than signalled)."""
        return self.signum is None


def parse_on_rotate(text: str) -> OnRotate:
    """`restart` or `signal:NAME` (`HUP`, `SIGHUP`, `USR1`, ...); ValueError otherwise."""
    if text == "restart":
        return OnRotate()
    kind, _, name = text.partition(":")
    if kind == "signal" and name:
        name = name.upper()
        try:
            return OnRotate(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
        except KeyError:
            pass
    raise ValueError(f"expected restart or signal:NAME (e.g. signal:HUP), not {text!r}")


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N ended it."""
    return returncode if returncode >= 0 else 128 - returncode


@attrs.define
class _Child:
    """CMD, started and restarted with the current key."""

    argv: Sequence[str]
    on_rotate: OnRotate
    process: asyncio.subprocess.Process | None = None
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    async def start(self, key: SecretKey) -> None:
        env = {**os.environ, API_KEY_ENV: key.reveal()}
        try:
            self.process = await asyncio.create_subprocess_exec(*self.argv, env=env)
        except OSError as exc:
            raise UsageError(f"cannot run {self.argv[0]}: {exc.strerror}") from None
        finally:
            del env

    def forward(self, signum: signal.Signals) -> None:
        """Pass a signal `run` got on to CMD."""
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signum)

    async def new_key(self, event: RotationEvent) -> None:
        """The rotator's callback: restart CMD with `event`'s key, or signal it."""
        if not self.on_rotate.restarts:
            assert self.on_rotate.signum is not None
            logger.info(
                "new key (generation %d): sending %s", event.generation, self.on_rotate.signum.name
            )
            self.forward(self.on_rotate.signum)
            return
        async with self._lock:
            old = self.process
            if old is not None and old.returncode is not None:
                return  # CMD has ended by itself: `run` ends with it, nothing to restart
            logger.info("new key (generation %d): restarting %s", event.generation, self.argv[0])
            if old is not None:
                await _stop(old)
            await self.start(event.new_key)

    async def wait(self) -> int:
        """Wait until CMD ends other than by a restart; its exit status."""
        while True:
            process = self.process
            assert process is not None
            code = await process.wait()
            async with self._lock:  # a restart in progress ends first
                if self.process is process:
                    return exit_status(code)


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@contextlib.contextmanager
def _forwarding(child: _Child) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, child.forward, signum)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run(args: argparse.Namespace, out: TextIO) -> int:
    """`run`: CMD with the current key, restarted or signalled on each new one."""
    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run needs a command: cs2cap-account run --store PATH -- CMD ARGS...")
    store = open_store(args)
    try:
        record = await store.load()
        key = record.key if record is not None else api_key(args)
        if key is None:
            raise UsageError(
                f"no root key: use a store that holds one, or set {API_KEY_ENV} "
                "(or --api-key-env VAR)"
            )
        async with make_client(args, api_key=key, session_token=None) as client:
            rotator = KeyRotator(client, store=store, check_interval=args.check_interval)
            await rotator.check()  # the newest stored key, before CMD starts
            child = _Child(argv, args.on_rotate)
            rotator.on_rotate(child.new_key)
            with _forwarding(child):
                await child.start(rotator.current_key)
                rotator.start()
                try:
                    status = await child.wait()
                finally:
                    await rotator.stop()
            logger.info("%s exited with status %d", argv[0], status)
            return status
    finally:
        await store.aclose()
