"""Every argument of `AccountClient()` and `with_options()` is checked at the boundary.

A wrong type raises `TypeError`, a value out of range (NaN, an infinity where it means
nothing, a negative or zero duration) raises `ValueError`; each names the argument and
never echoes a string value (it could be a key pasted into the wrong place). Valid values
keep working as before.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from cs2cap_account import AccountClient, FakeClock, Hooks

from ._payloads import ROOT_KEY

NAN = float("nan")
INF = float("inf")
# A key given where it does not belong: it must never come back in the message.
KEY_LIKE = ROOT_KEY

# (argument, bad value, the error it raises)
DURATIONS: list[tuple[str, object, type[Exception]]] = [
    *(("timeout", bad, ValueError) for bad in (NAN, INF, -INF, 0, 0.0, -1, -0.5)),
    *(("timeout", bad, TypeError) for bad in ("30", KEY_LIKE, True, False, None, [30], 1j)),
    *(("deadline", bad, ValueError) for bad in (NAN, INF, -INF, 0, -1.0)),
    *(("deadline", bad, TypeError) for bad in ("5", KEY_LIKE, True, [5])),
    *(("max_retry_wait", bad, ValueError) for bad in (NAN, -INF, -1, -0.1)),
    *(("max_retry_wait", bad, TypeError) for bad in ("60", KEY_LIKE, True, None)),
    *(("max_retries", bad, ValueError) for bad in (-1, -10)),
    *(("max_retries", bad, TypeError) for bad in (2.0, NAN, INF, True, False, "2", None)),
]
CLIENT_ONLY: list[tuple[str, object, type[Exception]]] = [
    *(("requests_per_minute", bad, ValueError) for bad in (-1, -60)),
    *(("requests_per_minute", bad, TypeError) for bad in (60.0, NAN, INF, True, "60")),
    *(("allow_insecure_http", bad, TypeError) for bad in ("no", 1, 0, None)),
    *(("hooks", bad, TypeError) for bad in ("on_request", {}, [], print)),  # type: ignore[var-annotated]
    *(("clock", bad, TypeError) for bad in ("system", time.monotonic, object(), 0)),
    *(("base_url", bad, TypeError) for bad in (42, b"https://api.cs2c.app/v1", ["x"])),
    *(("base_url", bad, ValueError) for bad in ("ftp://api.cs2c.app/v1", KEY_LIKE)),
    *(("session", bad, TypeError) for bad in ("s3ss10n", object())),
    ("transport", object(), TypeError),
    *(("api_key", bad, TypeError) for bad in (42, KEY_LIKE.encode(), [KEY_LIKE])),
    *(("api_key", bad, ValueError) for bad in ("", f" {KEY_LIKE}", f"{KEY_LIKE}\n")),
    *(("session_token", bad, TypeError) for bad in (42, b"eyJ.x.y")),
    *(("session_token", bad, ValueError) for bad in ("", " eyJhbGciOiJIUzI1NiJ9.e30.x ")),
]


def _case_id(case: tuple[str, object, type[Exception]]) -> str:
    argument, bad, _ = case
    shown = "KEY" if isinstance(bad, str | bytes) and KEY_LIKE in str(bad) else repr(bad)
    return f"{argument}={shown[:30]}"


def _assert_names_not_echoes(error: BaseException, argument: str, bad: object) -> None:
    message = str(error)
    assert argument in message
    # A URL is shown (redacted, as every message is), since it tells what was wrong.
    if argument != "base_url" and isinstance(bad, str | bytes) and bad and not bad.isspace():
        assert str(bad).strip() not in message
        assert repr(bad) not in message
    assert KEY_LIKE not in message


@pytest.mark.parametrize("case", DURATIONS + CLIENT_ONLY, ids=_case_id)
def test_a_bad_argument_to_the_client_is_refused(case: tuple[str, object, type[Exception]]) -> None:
    """Each argument x each bad value: the right error, naming the argument only."""
    argument, bad, error = case
    kwargs: dict[str, Any] = {"base_url": "https://api.cs2c.app/v1", argument: bad}
    if argument not in ("api_key", "session_token"):
        kwargs["api_key"] = ROOT_KEY

    with pytest.raises(error) as caught:
        AccountClient(**kwargs)

    assert type(caught.value) is error
    _assert_names_not_echoes(caught.value, argument, bad)


@pytest.mark.parametrize("case", DURATIONS, ids=_case_id)
def test_a_bad_argument_to_with_options_is_refused(
    case: tuple[str, object, type[Exception]],
) -> None:
    """`with_options` checks its four settings as the constructor does."""
    argument, bad, error = case
    client = AccountClient(ROOT_KEY)

    with pytest.raises(error) as caught:
        client.with_options(**{argument: bad})  # type: ignore[arg-type]

    assert type(caught.value) is error
    _assert_names_not_echoes(caught.value, argument, bad)


def test_max_retry_wait_nan_no_longer_waits_out_a_long_retry_after() -> None:
    """NaN compared false with every `Retry-After`, so no cap applied: now refused."""
    with pytest.raises(ValueError, match="max_retry_wait"):
        AccountClient(ROOT_KEY, max_retry_wait=NAN)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0.001},
        {"timeout": 5},
        {"timeout": 1e9},
        {"deadline": None},
        {"deadline": 0.5},
        {"deadline": 3},
        {"max_retry_wait": 0},
        {"max_retry_wait": 0.0},
        {"max_retry_wait": INF},
        {"max_retries": 0},
        {"max_retries": 50},
        {"requests_per_minute": None},
        {"requests_per_minute": 0},
        {"requests_per_minute": 600},
        {"allow_insecure_http": True},
        {"hooks": Hooks()},
        {"hooks": None},
        {"clock": FakeClock()},
        {"clock": None},
        {"base_url": None},
    ],
    ids=repr,
)
def test_valid_arguments_are_kept_as_given(kwargs: dict[str, Any]) -> None:
    """Edge values that mean something are accepted, and the settings read back as given."""
    client = AccountClient(ROOT_KEY, **kwargs)
    options = client._session.options
    for name in ("timeout", "max_retries", "deadline", "max_retry_wait"):
        if name in kwargs:
            assert getattr(options, name) == kwargs[name]
    copy = client.with_options(**{k: v for k, v in kwargs.items() if hasattr(options, k)})
    assert copy._session.options == options


def test_an_infinite_max_retry_wait_means_no_cap() -> None:
    """`max_retry_wait=inf` is the one infinity allowed: every `Retry-After` is honoured."""
    options = AccountClient(ROOT_KEY).with_options(max_retry_wait=INF)._session.options
    assert math.isinf(options.max_retry_wait)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_request": print}, "on_request must be a list or tuple"),
        ({"on_response": "hook"}, "on_response must be a list or tuple"),
        ({"on_retry": [print, 42]}, "each of on_retry must be callable, got int"),
        ({"on_request": None}, "on_request must be a list or tuple"),
    ],
)
def test_hooks_need_sequences_of_callables(kwargs: dict[str, Any], match: str) -> None:
    """`Hooks(on_request=f)` (one callable, not a list) would fail on the first request:
    it is refused when made. Lists and tuples of callables are taken as before.
    """
    with pytest.raises(TypeError, match=match):
        Hooks(**kwargs)
    assert Hooks(on_request=[print], on_response=(print,), on_retry=[]).on_request == [print]
