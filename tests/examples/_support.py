"""Loading the examples in `docs/examples` by path (it is not a package)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from cs2cap_account import KeyRecord, MemoryKeyStore

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load_example(name: str) -> ModuleType:
    """Import `docs/examples/<name>.py` as the module `cs2cap_examples_<name>`."""
    module_name = f"cs2cap_examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None, f"no example named {name!r}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


async def until(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Return once `condition()` holds; fail after `timeout` seconds (a bound, not a wait)."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - watches counters no event reports
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def sdk_tasks() -> list[asyncio.Task[object]]:
    """Unfinished tasks running the SDK's or an example's code (not the fake server's)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        ours = "cs2cap_account" in filename and "cs2cap_account/testing" not in filename
        if task is not asyncio.current_task() and (ours or filename.startswith(str(EXAMPLES))):
            found.append(task)
    return found


class HeldSaveStore(MemoryKeyStore):
    """A memory store that holds back the save of a reissued key until `release()`.

    While it is held, the server has revoked the old key but the rotator does not hold the
    new one yet: the moment a call sent with the old key is refused. `holding` is set when
    it begins.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holding = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let the held save (and any later one) through."""
        self._released.set()

    async def save(self, record: KeyRecord, *, expected_generation: int | None) -> None:
        """Save `record`, first waiting for `release()` if it replaces the stored key."""
        stored = await self.load()
        if stored is not None and record.key != stored.key:
            self.holding.set()
            await self._released.wait()
        await super().save(record, expected_generation=expected_generation)
