"""The suite-wide secret audit (tests/conftest.py) catches every kind of leak it claims to.

The audit is run on a small inner test file in a separate pytest process, loading the
suite's conftest as a plugin. The fakes there use known plaintexts, so this test can
check both verdicts and that the inner run's own output never shows a key in full.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cs2cap_account import SecretKey
from cs2cap_account.testing import FakeCS2CapAPI

from ._hygiene import KeyAudit, LeakHandler, exception_text, leaked_keys

TESTS_DIR = Path(__file__).resolve().parent.parent
ROOT = "sk_live_root_" + "R" * 28 + "root"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0." + "T" * 30 + "tokn"
OTHER = "sk_live_root_" + "O" * 28 + "othr"

INNER = f"""
import logging

import pytest

from cs2cap_account import AccountClient, SecretKey
from cs2cap_account.errors import CS2CapError
from cs2cap_account.testing import FakeCS2CapAPI

ROOT = {ROOT!r}
TOKEN = {TOKEN!r}
log = logging.getLogger("inner")


def fake() -> FakeCS2CapAPI:
    return FakeCS2CapAPI(root_key=ROOT, session_token=TOKEN)


def test_clean() -> None:
    api = fake()
    log.debug("rotated to %s, token %r", api.root_key, api.session_token)
    print("key in use:", api.root_key)


def test_debug_log_of_root_key() -> None:
    api = fake()
    log.debug("the key is %s", api.root_key.reveal())


def test_log_args_hold_child_key() -> None:
    api = fake()
    child = api.add_child_key("bot")
    log.info("child: %s", "ok", extra={{}})
    logging.getLogger("cs2cap_account").debug("made %r", [child.key.reveal()])


def test_log_of_exception_traceback() -> None:
    api = fake()
    try:
        raise ValueError("token " + api.session_token.reveal())
    except ValueError:
        log.exception("failed")


def test_raised_exception() -> None:
    api = fake()
    raise CS2CapError("bad key " + api.root_key.reveal())


def test_chained_cause() -> None:
    api = fake()
    try:
        raise KeyError(api.root_key.reveal())
    except KeyError as exc:
        raise CS2CapError("wrapped, looks clean") from exc


def test_caught_by_pytest_raises() -> None:
    api = fake()
    with pytest.raises(CS2CapError):
        raise CS2CapError("caught " + api.root_key.reveal())


def careless(token: SecretKey) -> None:
    header = "Bearer " + token.reveal()
    raise CS2CapError(f"refused ({{len(header)}} bytes of header)")


def test_caught_with_a_key_in_a_frame_local() -> None:
    api = fake()
    with pytest.raises(CS2CapError):
        careless(api.root_key)


def test_caught_without_a_key_in_any_frame_local() -> None:
    api = fake()
    with pytest.raises(CS2CapError):
        careless(SecretKey("sk_live_root_" + "N" * 28 + "none"))
    assert api.root_key.reveal() != "sk_live_root_" + "N" * 28 + "none"


def test_printed() -> None:
    print(fake().root_key.reveal())


@pytest.mark.reveals_keys
def test_printed_on_purpose() -> None:
    print(fake().root_key.reveal())


def make_and_drop() -> str:
    return fake().root_key.reveal()


def test_printed_after_the_fake_is_gone() -> None:
    plaintext = make_and_drop()
    print(plaintext[:13], plaintext[13:], sep="")


def test_failed_assertion_shows_key() -> None:
    assert fake().root_key.reveal() == "something else"


def test_subprocess_helper(assert_no_key_leaks) -> None:
    fake()
    assert_no_key_leaks("output: " + ROOT, where="the cli")


def test_subprocess_helper_extra_keys(assert_no_key_leaks) -> None:
    assert_no_key_leaks("output: {OTHER}", where="mock server", keys=[{OTHER!r}])


def test_subprocess_helper_clean(assert_no_key_leaks) -> None:
    fake()
    assert_no_key_leaks(b"output: sk_live_root_...root", where="the cli")
"""

EXPECTED = {
    "test_clean": "PASSED",
    "test_debug_log_of_root_key": "FAILED",
    "test_log_args_hold_child_key": "FAILED",
    "test_log_of_exception_traceback": "FAILED",
    "test_raised_exception": "FAILED",
    "test_chained_cause": "FAILED",
    "test_caught_by_pytest_raises": "FAILED",
    "test_caught_with_a_key_in_a_frame_local": "FAILED",
    "test_caught_without_a_key_in_any_frame_local": "PASSED",
    "test_printed": "FAILED",
    "test_printed_on_purpose": "PASSED",
    "test_printed_after_the_fake_is_gone": "FAILED",
    "test_failed_assertion_shows_key": "FAILED",
    "test_subprocess_helper": "FAILED",
    "test_subprocess_helper_extra_keys": "FAILED",
    "test_subprocess_helper_clean": "PASSED",
}


@pytest.fixture(scope="module")
def inner_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Run the inner tests once under the suite's conftest; return everything printed."""
    where = tmp_path_factory.mktemp("hygiene")
    (where / "test_inner.py").write_text(INNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(where)])}
    done = subprocess.run(  # noqa: S603 - this interpreter, running pytest on our own file
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "conftest",
            "-p",
            "no:cs2cap_account",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--rootdir",
            str(where),
            "-rA",
            "-v",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            str(where / "test_inner.py"),
        ],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.stdout + done.stderr


def test_every_kind_of_leak_fails_its_test_and_clean_tests_pass(inner_run: str) -> None:
    """Log records (message, args, tracebacks), raised and chained exceptions, exceptions
    caught by `pytest.raises` (their messages and their frames' locals), printed output
    (unless marked `reveals_keys`), failure reports and the subprocess helper: each leak
    fails its test; clean tests pass.
    """
    verdicts = dict(re.findall(r"test_inner\.py::(\w+) (PASSED|FAILED)", inner_run))
    assert verdicts == EXPECTED, inner_run[-4000:]
    assert "[secret hygiene] plaintext keys leaked" in inner_run
    assert "in local 'header' of careless() in a CS2CapError" in inner_run  # named


def test_the_audit_never_prints_a_key_in_full(inner_run: str) -> None:
    """The inner run's whole output (failure reports included) shows keys only redacted."""
    assert ROOT not in inner_run
    assert TOKEN not in inner_run
    assert OTHER not in inner_run
    assert "sk_live_root_…root" in inner_run  # what it shows instead


def test_the_redacted_failure_says_so(inner_run: str) -> None:
    """A failure whose report would show a key is shown redacted, with a note saying so."""
    assert "the output above held plaintext keys, shown redacted" in inner_run


def test_leaked_keys_finds_plaintext_not_redacted_forms() -> None:
    """`leaked_keys` reports plaintexts found (redacted), never the redacted form itself."""
    key = SecretKey(ROOT)
    assert leaked_keys(f"x{ROOT}y", [key, OTHER]) == [key.redacted]
    assert leaked_keys(f"{key} {key!r}", [key]) == []


def test_exception_text_covers_the_whole_chain() -> None:
    """Causes, contexts and exception groups are all part of an exception's text."""
    outer = RuntimeError("outer")
    outer.__cause__ = ValueError(ROOT)
    outer.__context__ = KeyError(OTHER)
    text = exception_text(outer)
    assert ROOT in text
    assert OTHER in text
    if sys.version_info >= (3, 11):
        group = BaseExceptionGroup("many", [KeyError(TOKEN)])  # noqa: F821 - 3.11+
        assert TOKEN in exception_text(group)


def test_the_log_handler_checks_in_batches_and_names_the_record() -> None:
    """Records are checked when a batch fills and on flush; the leak names the record,
    redacted, and each leak is reported once.
    """
    api = FakeCS2CapAPI(root_key=ROOT, session_token=TOKEN)
    audit = KeyAudit([api])
    handler = LeakHandler(audit)
    logger = logging.getLogger("tests.reliability.hygiene")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(300):
            logger.warning("line %d", n)
        logger.warning("key %s", ROOT)
        logger.warning("key %s", ROOT)
        assert audit.leaks == []  # still in the batch
        handler.flush()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert handler.records == 302
    assert [leak.key for leak in audit.leaks] == [SecretKey(ROOT).redacted]
    assert "sk_live_root_…root" in audit.leaks[0].where
    assert ROOT not in audit.leaks[0].where
