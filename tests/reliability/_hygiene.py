"""Secret hygiene for the whole suite: no key a fake issued may show up where people read.

`KeyAudit` follows one test. It knows every `FakeCS2CapAPI` created during the test (they
are tracked, so one that went out of scope early still counts) and any other fake still
alive, and so every plaintext credential those fakes handed out: root keys, child keys
and session tokens. It looks for them in

- every log record, at DEBUG and up (a handler on the root logger formats each record's
  message, its raw arguments and any traceback; records are checked in small batches);
- every exception raised out of the test, and every exception a `pytest.raises` block
  caught: message, repr and formatted traceback, with the whole cause/context chain, and
  the locals of every frame in those tracebacks as an error reporter that captures locals
  (Sentry, `traceback.TracebackException(capture_locals=True)`) would show them: the
  `repr()` of each (frames of the tests, of the fake and of pytest excepted);
- the test's captured stdout and stderr (not for tests marked `reveals_keys`, which print
  a key on purpose), and any text handed to `check()`, such as a subprocess's output.

What it finds is reported redacted (`sk_live_root_…a1b2`), so the report is not a leak.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import attrs

import cs2cap_account.testing
from cs2cap_account import CS2CapError, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI, live_fakes

__all__ = [
    "KeyAudit",
    "Leak",
    "LeakHandler",
    "captured_locals",
    "exception_text",
    "leaked_keys",
    "record_text",
]

# Log records are checked this many at a time: bounded memory, few passes over the keys.
_BATCH: Final = 256
# Frames whose locals are not the SDK's to keep clean: the tests' own code, the fake (the
# server's side of the wire, here in the same process) and the test runner.
_TESTS_DIR: Final = str(Path(__file__).resolve().parent.parent)
_FAKE_DIR: Final = str(Path(cs2cap_account.testing.__file__).resolve().parent)
_RUNNER_MODULES: Final = ("_pytest.", "pluggy.", "pytest_asyncio.")


def leaked_keys(text: str, keys: Iterable[SecretKey | str]) -> list[str]:
    """The keys among `keys` whose plaintext occurs in `text`, each shown redacted."""
    found = []
    for key in keys:
        secret = key if isinstance(key, SecretKey) else SecretKey(key)
        if secret.reveal() in text:
            found.append(secret.redacted)
    return found


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write for `record`: message, raw args, traceback."""
    parts = []
    with contextlib.suppress(TypeError, ValueError):  # a bad format: the raw parts remain
        parts.append(record.getMessage())
    parts += [str(record.msg), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(exception_text(record.exc_info[1]))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        cause = getattr(current, "cause", None)  # OutcomeUnknownError keeps one aside
        if isinstance(cause, BaseException):
            todo.append(cause)
        grouped = getattr(current, "exceptions", None)  # an exception group (3.11+)
        if isinstance(grouped, tuple):
            todo.extend(e for e in grouped if isinstance(e, BaseException))


def exception_text(exc: BaseException) -> str:
    """The traceback of `exc` as Python prints it, plus the str and repr of every
    exception in its cause/context chain (and in any exception group).
    """
    parts = traceback.format_exception(exc)
    for link in _chain(exc):
        parts.append(repr(link))
        try:
            parts.append(str(link))
        except Exception as err:  # a broken __str__ must not hide the rest
            parts.append(f"<str() failed: {type(err).__name__}>")
    return "\n".join(parts)


def _outside_the_sdk(frame: object) -> bool:
    code = getattr(frame, "f_code", None)
    filename = getattr(code, "co_filename", "")
    module = str(getattr(frame, "f_globals", {}).get("__name__", ""))
    return (
        filename.startswith((_TESTS_DIR, _FAKE_DIR))
        or module.startswith(_RUNNER_MODULES)
        or module == "pytest"
    )


def _in_the_sdk(frame: object) -> bool:
    module = str(getattr(frame, "f_globals", {}).get("__name__", ""))
    return module.startswith("cs2cap_account.") and not module.startswith("cs2cap_account.testing")


def _through_the_sdk(links: list[BaseException]) -> bool:
    """Whether the SDK raised any of `links` or any of them passed through its frames."""
    return any(
        isinstance(link, CS2CapError)
        or any(_in_the_sdk(frame) for frame, _ in traceback.walk_tb(link.__traceback__))
        for link in links
    )


def captured_locals(exc: BaseException) -> list[tuple[str, str]]:
    """What an error reporter that captures locals shows for `exc` and its whole chain.

    For every frame of every traceback in the cause/context chain (and exception groups),
    `(where, repr(value))` for each local, as `TracebackException(capture_locals=True)`
    renders them: `repr()` of each value, which for a container reprs its items. Frames of
    the tests, of the fake and of pytest are left out: their locals are not the SDK's; so
    is an exception the SDK neither raised nor passed on (a test's own aiohttp request).
    A `repr()` that raises is shown as such (in 3.11 it breaks `capture_locals` itself).
    """
    links = list(_chain(exc))
    if not _through_the_sdk(links):
        return []
    found = []
    for link in links:
        for frame, _ in traceback.walk_tb(link.__traceback__):
            if _outside_the_sdk(frame):
                continue
            function = frame.f_code.co_name
            for name, value in frame.f_locals.items():
                try:
                    shown = repr(value)
                except Exception as err:  # any failure is the finding
                    shown = f"<repr() raised {type(err).__name__}>"
                found.append((f"local {name!r} of {function}() in a {type(link).__name__}", shown))
    return found


@attrs.frozen
class Leak:
    """A plaintext key (shown redacted) found in `where`."""

    key: str
    where: str

    def __str__(self) -> str:
        return f"{self.key} in {self.where}"


@attrs.define
class KeyAudit:
    """The keys every fake of one test issued, and where any of them leaked."""

    fakes: list[FakeCS2CapAPI]
    leaks: list[Leak] = attrs.field(factory=list)
    handler: LeakHandler | None = None
    # How many exceptions were checked, and how many captured locals they had.
    exceptions: int = attrs.field(default=0, init=False)
    locals: int = attrs.field(default=0, init=False)
    _reported: set[Leak] = attrs.field(factory=set, init=False)
    _shown: int = attrs.field(default=0, init=False)

    def new_leaks(self) -> list[Leak]:
        """Check the log records not checked yet; return the leaks not returned before."""
        if self.handler is not None:
            self.handler.flush()
        fresh = self.leaks[self._shown :]
        self._shown = len(self.leaks)
        return fresh

    def keys(self) -> list[SecretKey]:
        """Every credential issued by the tracked fakes and by any fake still alive."""
        fakes = {id(api): api for api in (*self.fakes, *live_fakes())}
        return [key for api in fakes.values() for key in api.issued_secrets()]

    def find(self, text: str, *, extra: Iterable[SecretKey | str] = ()) -> list[str]:
        """The known keys, plus `extra`, found in `text` (redacted); nothing is recorded."""
        return leaked_keys(text, [*self.keys(), *extra]) if text else []

    def check(self, text: str, where: str, *, extra: Iterable[SecretKey | str] = ()) -> list[Leak]:
        """Record (once each) and return the known keys, plus `extra`, found in `text`."""
        found = [Leak(key, where) for key in self.find(text, extra=extra)]
        for leak in found:
            if leak not in self._reported:
                self._reported.add(leak)
                self.leaks.append(leak)
        return found

    def check_exception(self, exc: BaseException, where: str) -> list[Leak]:
        """Check everything `exc` and its chain would print, and their frames' locals."""
        self.exceptions += 1
        found = self.check(exception_text(exc), where)
        shown = captured_locals(exc)
        self.locals += len(shown)
        if self.find("\n".join(text for _, text in shown)):  # one pass; then name the local
            for local, text in shown:
                found += self.check(text, f"{local}, {where}")
        return found

    def redact(self, text: str) -> str:
        """`text` with every known key replaced by its redacted form."""
        for key in self.keys():
            text = text.replace(key.reveal(), key.redacted)
        return text


class LeakHandler(logging.Handler):
    """Feeds every log record's text to a `KeyAudit`, a batch at a time."""

    def __init__(self, audit: KeyAudit) -> None:
        super().__init__(logging.DEBUG)
        self.audit = audit
        self.records = 0
        self._batch: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's text; check the batch when it is full."""
        self.records += 1
        self._batch.append(f"[{record.name} {record.levelname}] {record_text(record)}")
        if len(self._batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Check the records kept so far, then forget them."""
        batch, self._batch = self._batch, []
        if not batch or not self.audit.find("\n".join(batch)):
            return
        for text in batch:  # name the records that leaked
            shown = self.audit.redact(text).splitlines()[0][:160]
            self.audit.check(text, f"log record {shown!r}")
