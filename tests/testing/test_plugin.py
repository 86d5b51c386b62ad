"""The pytest plugin: its fixtures, its marker, and its behaviour without pytest-asyncio."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cs2cap_account import AccountClient
from cs2cap_account.testing import FakeCS2CapAPI

from ._support import Http


async def test_fake_cs2cap_is_a_running_fake(fake_cs2cap: FakeCS2CapAPI) -> None:
    """The fixture yields a started quant-tier fake that answers its own root key."""
    assert fake_cs2cap.tier == "quant"
    async with Http.open(fake_cs2cap, tcp=True) as http:  # over TCP: it must be listening
        reply = await http.get("/account/key", token=fake_cs2cap.root_key)
    assert reply.json["key"]["id"] == fake_cs2cap.root_key_id


@pytest.mark.cs2cap_fake(tier="pro", rate_limits=False, email_verified=False)
async def test_the_marker_configures_the_fake(fake_cs2cap: FakeCS2CapAPI) -> None:
    """`@pytest.mark.cs2cap_fake(...)` passes its keyword arguments to the fake."""
    assert fake_cs2cap.tier == "pro"
    assert not fake_cs2cap.email_verified


async def test_cs2cap_client_talks_to_the_fake(
    fake_cs2cap: FakeCS2CapAPI, cs2cap_client: AccountClient
) -> None:
    """The client fixture uses the fake's root key and base URL."""
    info = await cs2cap_client.get_key()
    assert info.id == fake_cs2cap.root_key_id
    assert fake_cs2cap.requests["get_key"] >= 1


async def test_the_app_can_be_served_by_aiohttp_test_utils() -> None:
    """`api.app` is a plain aiohttp application, usable with `aiohttp.test_utils`."""
    api = FakeCS2CapAPI()
    async with TestServer(api.app) as server, TestClient(server) as client:
        headers = {"Authorization": f"Bearer {api.root_key.reveal()}"}
        response = await client.get("/v1/account/key", headers=headers)
        assert response.status == 200


def test_the_plugin_is_registered_by_entry_point(pytestconfig: pytest.Config) -> None:
    """The package declares the plugin under `pytest11`, and this run has it loaded."""
    declared = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert declared["cs2cap_account"] == "cs2cap_account.testing.plugin"
    assert sys.modules["cs2cap_account.testing.plugin"] in pytestconfig.pluginmanager.get_plugins()


def test_without_pytest_asyncio_the_fixtures_explain_themselves(tmp_path: Path) -> None:
    """With pytest-asyncio unimportable, the plugin loads and its fixtures fail clearly."""
    (tmp_path / "pytest_asyncio.py").write_text("raise ImportError('not installed here')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_uses_fake.py").write_text(
        textwrap.dedent(
            '''
            def test_needs_the_fake(fake_cs2cap):
                """Would need pytest-asyncio."""
            '''
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "cs2cap_account.testing.plugin",
            "-p",
            "no:cacheprovider",
            "test_uses_fake.py",
        ],
        cwd=tmp_path,
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs pytest-asyncio" in result.stdout
