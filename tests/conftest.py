"""Fixtures shared by every test directory: a clean environment, virtual time, and the fake
API with the double picked per fixture.

- `fake`: a `FakeCS2CapAPI` on the test's virtual clock, not started (no socket);
  configure it with `@pytest.mark.cs2cap_fake(tier=..., ...)`.
- `fake_client`: an `AccountClient` for `fake` through `fake.transport()`: in-process.
- `tcp_fake` / `tcp_fake_client`: the same fake started on a loopback port, and a client
  that reaches it over TCP with aiohttp, for the tests where the socket is the point.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any

import pytest
from _pytest.reports import TestReport
from operable._audit import audit_metrics, audit_spans
from reliability._hygiene import KeyAudit, LeakHandler
from reliability._profile import STATS

from cs2cap_account import AccountClient, FakeClock, SecretKey
from cs2cap_account.testing import FakeCS2CapAPI, tracking_fakes

# Loaded here, not through the entry point (see pyproject.toml), for coverage's sake.
pytest_plugins = ["cs2cap_account.testing.plugin"]


@pytest.fixture(autouse=True)
def _no_cs2cap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's CS2C_API_KEY / CS2C_API_BASE out of every test."""
    monkeypatch.delenv("CS2C_API_KEY", raising=False)
    monkeypatch.delenv("CS2C_API_BASE", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    """A virtual clock: sleeps return at once and are recorded in `clock.sleeps`."""
    return FakeClock()


# --- the fake API: in-process by default, over TCP where a socket is the point -------------

FAKE_BASE_URL = "https://fake.test/v1"
"""A base URL for in-process clients: never resolved, only its path is routed."""


@pytest.fixture
def fake(request: pytest.FixtureRequest, clock: FakeClock) -> FakeCS2CapAPI:
    """A fake API on the test's virtual clock, not started: reach it with `fake.transport()`.

    Arguments come from the `cs2cap_fake` marker, as for the plugin's `fake_cs2cap`.
    """
    marker = request.node.get_closest_marker("cs2cap_fake")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    options.setdefault("clock", clock.monotonic)
    options.setdefault("wall_clock", clock.now)
    return FakeCS2CapAPI(**options)


@pytest.fixture
async def fake_client(fake: FakeCS2CapAPI, clock: FakeClock) -> AsyncIterator[AccountClient]:
    """A client with `fake`'s root key, in-process (no socket), on the virtual clock."""
    async with AccountClient(
        fake.root_key, base_url=FAKE_BASE_URL, transport=fake.transport(clock=clock), clock=clock
    ) as client:
        yield client


@pytest.fixture
async def tcp_fake(fake: FakeCS2CapAPI) -> AsyncIterator[FakeCS2CapAPI]:
    """`fake`, started on a loopback port (for tests about the socket itself)."""
    async with fake:
        yield fake


@pytest.fixture
async def tcp_fake_client(
    tcp_fake: FakeCS2CapAPI, clock: FakeClock
) -> AsyncIterator[AccountClient]:
    """A client with the fake's root key over TCP (aiohttp), on the virtual clock."""
    async with AccountClient(tcp_fake.root_key, base_url=tcp_fake.base_url, clock=clock) as client:
        yield client


# --- secret hygiene: no key a fake issued may appear in logs, exceptions or output ---------

_AUDIT = pytest.StashKey[KeyAudit]()
_REVEALS_KEYS = "reveals_keys"


def pytest_configure(config: pytest.Config) -> None:
    """Register the `reveals_keys` marker."""
    config.addinivalue_line(
        "markers",
        f"{_REVEALS_KEYS}: the test prints a key on purpose; its captured stdout and stderr "
        "are not checked for plaintext keys (its logs and exceptions still are)",
    )


def _raises_classes() -> list[tuple[type, Callable[..., bool]]]:
    """The classes behind `pytest.raises` blocks (the name depends on pytest's version),
    each with its `__exit__`.
    """
    found: list[tuple[type, Callable[..., bool]]] = []
    for module, name in (("_pytest.raises", "RaisesExc"), ("_pytest.python_api", "RaisesContext")):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        exit_ = getattr(cls, "__exit__", None)
        if isinstance(cls, type) and callable(exit_):
            found.append((cls, exit_))
    return found


def _auditing_exit(audit: KeyAudit, exit_: Callable[..., bool]) -> Callable[..., bool]:
    """Wrap `pytest.raises`'s `__exit__` so each exception it catches is checked too."""

    def __exit__(self: object, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None:
            audit.check_exception(exc, f"a {type(exc).__name__} caught by pytest.raises")
        return exit_(self, exc_type, exc, tb)

    return __exit__


def _auditing_popen(audit: KeyAudit, init: Callable[..., None]) -> Callable[..., None]:
    """Wrap `subprocess.Popen.__init__` so every child's argv is checked (a key belongs in
    its environment, never on a command line that `ps` shows).
    """

    def __init__(self: object, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        audit.check(" ".join(map(os.fsdecode, argv)), "the argv of a subprocess")
        init(self, args, *rest, **kwargs)

    return __init__


@pytest.fixture(autouse=True)
def _no_key_leaks(request: pytest.FixtureRequest) -> Iterator[KeyAudit]:
    """Fail the test if a plaintext key issued by any `FakeCS2CapAPI` shows up in a log
    record (every record, DEBUG and up, via a handler on the root logger), an exception
    raised out of the test or caught by `pytest.raises` (its text, and the locals of its
    frames as a reporter capturing locals would show them), the argv of any subprocess
    started (by the test, the CLI, a `CommandSink` or `run`), the captured stdout/stderr,
    a span ended (OpenTelemetry's SDK) or a metrics exposition (`operable/_audit.py`).
    The verdict is given in `pytest_runtest_makereport`, phase by phase.
    """
    with tracking_fakes() as fakes, pytest.MonkeyPatch.context() as patch:
        audit = KeyAudit(fakes)
        audit.handler = LeakHandler(audit)
        request.node.stash[_AUDIT] = audit
        for cls, exit_ in _raises_classes():
            patch.setattr(cls, "__exit__", _auditing_exit(audit, exit_))
        audit_spans(audit, patch)  # every span ended, and (below) every metrics exposition
        patch.setattr(
            subprocess.Popen, "__init__", _auditing_popen(audit, subprocess.Popen.__init__)
        )
        root = logging.getLogger()
        level = root.level
        root.addHandler(audit.handler)
        root.setLevel(logging.DEBUG)
        try:
            yield audit
        finally:
            audit_metrics(audit)
            root.removeHandler(audit.handler)
            root.setLevel(level)
            audit.handler.flush()


@pytest.fixture
def assert_no_key_leaks(request: pytest.FixtureRequest) -> Callable[..., None]:
    """A check for text a test got from elsewhere, such as a subprocess's output.

    ::

        def test_key_show(assert_no_key_leaks):
            done = subprocess.run([...], capture_output=True, text=True, check=False)
            assert_no_key_leaks(done.stdout + done.stderr, where="key show")

    Fails the test if the text holds a key issued by any fake of this test (or any fake
    still alive), or any of `keys=` (e.g. the keys of a fake running in a subprocess).
    """
    audit = request.node.stash[_AUDIT]

    def check(
        output: str | bytes,
        *,
        where: str = "subprocess output",
        keys: Iterable[SecretKey | str] = (),
    ) -> None:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        leaks = audit.check(text, where, extra=keys)
        if leaks:
            audit.new_leaks()  # reported here; the phase's report need not repeat them
            pytest.fail("plaintext keys leaked: " + "; ".join(map(str, leaks)), pytrace=False)

    return check


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, TestReport, TestReport]:
    """Check what this phase produced for plaintext keys; fail the phase if any leaked."""
    report = yield
    audit = item.stash.get(_AUDIT, None)
    if audit is None:
        return report
    if call.excinfo is not None:
        audit.check_exception(call.excinfo.value, f"the exception raised in {call.when}")
    reveals = item.get_closest_marker(_REVEALS_KEYS) is not None
    sections = []
    for title, content in report.sections:
        if not audit.find(content):
            sections.append((title, content))
            continue
        if not reveals or title.startswith("Captured log"):
            audit.check(content, title.lower())
        # What pytest prints shows keys only redacted, even those revealed on purpose.
        sections.append((title, audit.redact(content)))
    report.sections = sections
    leaks = audit.new_leaks()
    if report.failed and audit.find(str(report.longrepr)):
        report.longrepr = audit.redact(str(report.longrepr)) + (
            "\n\n[secret hygiene] the output above held plaintext keys, shown redacted"
        )
    if leaks:
        listed = "\n".join(f"  - {leak}" for leak in leaks)
        note = f"[secret hygiene] plaintext keys leaked:\n{listed}"
        if report.failed:
            report.longrepr = f"{report.longrepr}\n\n{note}"
        else:
            report.outcome = "failed"
            report.longrepr = note
    if call.when == "teardown":
        del item.stash[_AUDIT]  # let this test's fakes go
        audit.fakes.clear()
        STATS.tests_audited += 1
        STATS.log_records_audited += audit.handler.records if audit.handler else 0
        STATS.exceptions_audited += audit.exceptions
        STATS.locals_audited += audit.locals
        STATS.leaks += len(audit.leaks)
    return report
