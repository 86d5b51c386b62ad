"""`VaultKVSink` against a real OpenBao dev server: KV v2, check-and-set on the version."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore
from cs2cap_account.sinks import SinkError, VaultKVSink
from sinks._support import Gate, Mode
from sinks.conftest import Bao

pytestmark = pytest.mark.usefixtures("bao_server")


async def _secret(bao: Bao, path: str) -> dict[str, Any]:
    """The latest version of `secret/<path>`: {"data": ..., "metadata": ...}."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{bao.url}/v1/secret/data/{path}", headers={"X-Vault-Token": bao.token}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = (await response.json())["data"]
        return body


async def _write(bao: Bao, path: str, data: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{bao.url}/v1/secret/data/{path}",
            json={"data": data},
            headers={"X-Vault-Token": bao.token},
        ) as response,
    ):
        assert response.status == 200, await response.text()


def _path(secret_name: str) -> str:
    return secret_name.replace("/", "-")


async def test_each_rotation_writes_the_field_and_keeps_the_other_fields(
    fake_client: AccountClient, bao_server: Bao, secret_name: str
) -> None:
    """Two rotations, two versions; the secret's other fields are kept as they were."""
    path = _path(secret_name)
    await _write(bao_server, path, {"owner": "team-a"})
    sink = VaultKVSink(bao_server.url, token=bao_server.token, path=path)
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
    await rotator.rotate_now()
    two = await rotator.rotate_now()
    secret = await _secret(bao_server, path)
    assert secret["data"] == {"owner": "team-a", "api_key": two.new_key.reveal()}
    assert secret["metadata"]["version"] == 3
    assert two.sink_errors == ()


async def test_a_new_secret_is_created_with_check_and_set_zero(
    fake_client: AccountClient, bao_server: Bao, secret_name: str
) -> None:
    """No secret at the path yet: it is created (version 1) in the named field."""
    path = _path(secret_name)
    sink = VaultKVSink(bao_server.url, token=bao_server.token, path=path, field="key")
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
    event = await rotator.rotate_now()
    secret = await _secret(bao_server, path)
    assert secret["data"] == {"key": event.new_key.reveal()}
    assert secret["metadata"]["version"] == 1


async def test_vault_down_during_the_rotation_catches_up_with_one_version(
    fake_client: AccountClient, bao_gate: Gate, bao_server: Bao, secret_name: str
) -> None:
    """Vault unreachable while the key rotates: the rotation completes; the next check
    after it is back writes the key, in one new version.
    """
    path = _path(secret_name)
    await _write(bao_server, path, {"api_key": "placeholder"})
    sink = VaultKVSink(bao_gate.url, token=bao_server.token, path=path)
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), max_age=86400 * 30, sinks=[sink])
    bao_gate.mode = Mode.REFUSE
    event = await rotator.rotate_now()
    assert [f.sink for f in event.sink_errors] == [sink.name]
    assert rotator.current_key == event.new_key
    bao_gate.mode = Mode.PASS
    await rotator.check()
    await rotator.check()
    secret = await _secret(bao_server, path)
    assert secret["data"]["api_key"] == event.new_key.reveal()
    assert secret["metadata"]["version"] == 2


async def test_a_write_retried_after_a_lost_answer_makes_no_second_version(
    fake_client: AccountClient, bao_gate: Gate, bao_server: Bao, secret_name: str
) -> None:
    """The write lands but its answer is lost; the retry reads the key already there and
    writes nothing more.
    """
    path = _path(secret_name)
    await _write(bao_server, path, {"api_key": "placeholder"})
    sink = VaultKVSink(bao_gate.url, token=bao_server.token, path=path)
    rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])

    bao_gate.drop_answer_to = b"POST"  # the write lands; its answer is lost
    event = await rotator.rotate_now()
    assert event.sink_errors == ()
    assert bao_gate.drop_answer_to is None, "the write's answer was dropped"
    secret = await _secret(bao_server, path)
    assert secret["data"]["api_key"] == event.new_key.reveal()
    assert secret["metadata"]["version"] == 2


async def test_a_concurrent_writer_is_never_overwritten(bao_server: Bao, secret_name: str) -> None:
    """Another writer between the read and the write: check-and-set refuses the write, the
    sink reads again and keeps that writer's fields.
    """
    from sinks.test_file import _event

    path = _path(secret_name)
    await _write(bao_server, path, {"owner": "team-a"})
    sink = VaultKVSink(bao_server.url, token=bao_server.token, path=path)
    real_read = sink._read
    raced = [False]

    async def read_then_race(session: aiohttp.ClientSession) -> Any:
        current = await real_read(session)
        if not raced[0]:
            raced[0] = True
            await _write(bao_server, path, {"owner": "team-b"})
        return current

    sink._read = read_then_race  # type: ignore[method-assign]
    event = _event()
    await sink.publish(event)
    secret = await _secret(bao_server, path)
    assert secret["data"] == {"owner": "team-b", "api_key": event.new_key.reveal()}
    assert secret["metadata"]["version"] == 3


async def test_a_refused_token_is_a_sink_error_with_vaults_answer(
    bao_server: Bao, secret_name: str
) -> None:
    """A token Vault refuses: SinkError with the HTTP status, not the token or key."""
    from sinks.test_file import _event

    sink = VaultKVSink(bao_server.url, token="not-a-token", path=_path(secret_name))
    event = _event()
    with pytest.raises(SinkError, match="HTTP 403") as caught:
        await sink.publish(event)
    assert "not-a-token" not in str(caught.value)
    assert event.new_key.reveal() not in str(caught.value)


def test_the_token_is_not_in_the_repr() -> None:
    """The sink's repr shows where it writes, never its token."""
    sink = VaultKVSink("https://vault.example:8200", token="s.secret-token", path="a/b")
    assert "secret-token" not in repr(sink)
    assert sink.name == "vault:https://vault.example:8200/secret/a/b"


@pytest.mark.parametrize(
    ("url", "kwargs", "error"),
    [
        (42, {}, TypeError),
        ("ftp://vault", {}, ValueError),
        ("http://vault.example:8200", {}, ValueError),
        ("https://user:pw@vault.example", {}, ValueError),
        ("https://vault.example", {"token": ""}, ValueError),
        ("https://vault.example", {"token": 42}, TypeError),
        ("https://vault.example", {"path": "../x"}, ValueError),
        ("https://vault.example", {"mount": 3}, TypeError),
        ("https://vault.example", {"field": ""}, ValueError),
    ],
)
def test_arguments_are_checked(url: object, kwargs: dict[str, Any], error: type[Exception]) -> None:
    """A wrong URL (plain http off loopback included), token, path, mount or field."""
    options: dict[str, Any] = {"token": "t", "path": "a/b", **kwargs}
    with pytest.raises(error):
        VaultKVSink(url, **options)  # type: ignore[arg-type]
