"""pytest plugin: a running fake CS2Cap Account API, and an SDK client pointed at it.

Installing `cs2cap-account` registers this plugin (entry point `pytest11`), so any test
suite gets two fixtures, each fresh per test:

- `fake_cs2cap`: a started `cs2cap_account.testing.FakeCS2CapAPI` on `127.0.0.1` (quant
  tier, rate limits on). Script faults on it, read its counters, check `is_active(key)`.
- `cs2cap_client`: an `AccountClient(api_key=fake_cs2cap.root_key,
  base_url=fake_cs2cap.base_url)`, closed after the test.

Pass constructor arguments to the fake with the `cs2cap_fake` marker::

    @pytest.mark.cs2cap_fake(tier="pro", rate_limits=False)
    async def test_reissue_survives_a_lost_response(fake_cs2cap, cs2cap_client):
        fake_cs2cap.faults.drop_after_commit("reissue_key")
        ...

Both fixtures are async and need pytest-asyncio. Without it this module still imports,
and using either fixture fails with a message saying what to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from cs2cap_account import AccountClient
    from cs2cap_account.testing import FakeCS2CapAPI

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is missing
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = ["cs2cap_client", "fake_cs2cap", "pytest_configure"]

_MARKER = "cs2cap_fake"
_F = TypeVar("_F", bound=Callable[..., Any])


def pytest_configure(config: pytest.Config) -> None:
    """Register the `cs2cap_fake` marker."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**kwargs): keyword arguments for the fake_cs2cap fixture's FakeCS2CapAPI",
    )


def _async_fixture(func: _F) -> _F:
    """`pytest_asyncio.fixture`, or a fixture that explains why it cannot run."""
    if pytest_asyncio is None:  # pragma: no cover - only where pytest-asyncio is missing
        return _unavailable(func)
    return cast("_F", pytest_asyncio.fixture(func))


def _unavailable(func: _F) -> _F:  # pragma: no cover - only where pytest-asyncio is missing
    """A synchronous stand-in for `func` that fails the test with an install hint."""

    def fail() -> NoReturn:
        pytest.fail(
            f"the {func.__name__} fixture is async and needs pytest-asyncio: "
            "pip install pytest-asyncio (or cs2cap-account[test])",
            pytrace=False,
        )

    fail.__doc__ = func.__doc__
    return cast("_F", pytest.fixture(name=func.__name__)(fail))


@_async_fixture
async def fake_cs2cap(request: pytest.FixtureRequest) -> AsyncIterator[FakeCS2CapAPI]:
    """A running fake CS2Cap Account API (see `cs2cap_account.testing.FakeCS2CapAPI`).

    Configure it with `@pytest.mark.cs2cap_fake(tier=..., rate_limits=..., ...)`.
    """
    from cs2cap_account.testing import FakeCS2CapAPI

    marker = request.node.get_closest_marker(_MARKER)
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with FakeCS2CapAPI(**options) as api:
        yield api


@_async_fixture
async def cs2cap_client(fake_cs2cap: FakeCS2CapAPI) -> AsyncIterator[AccountClient]:
    """An `AccountClient` using the fake's root key and base URL, closed after the test."""
    from cs2cap_account import AccountClient

    async with AccountClient(api_key=fake_cs2cap.root_key, base_url=fake_cs2cap.base_url) as client:
        yield client
