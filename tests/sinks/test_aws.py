"""`AwsSecretsManagerSink` against moto's server mode: real HTTP, real botocore signing."""

from __future__ import annotations

from typing import Any

import pytest

from cs2cap_account import AccountClient, KeyRotator, MemoryKeyStore
from cs2cap_account.sinks import AwsSecretsManagerSink
from cs2cap_account.sinks._aws import request_token
from sinks._support import Gate, Mode
from sinks.conftest import AWS_CREDENTIALS, Moto, aws_client

pytestmark = pytest.mark.usefixtures("moto_server")


async def _create(client: Any, name: str) -> str:
    """Create the secret with a placeholder value, as infrastructure would; its version."""
    made = await client.create_secret(Name=name, SecretString="placeholder")
    version: str = made["VersionId"]
    return version


async def _versions(client: Any, name: str) -> dict[str, list[str]]:
    listed = await client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)
    return {v["VersionId"]: sorted(v.get("VersionStages", [])) for v in listed["Versions"]}


async def _value(client: Any, name: str, stage: str) -> str:
    got = await client.get_secret_value(SecretId=name, VersionStage=stage)
    value: str = got["SecretString"]
    return value


async def test_each_rotation_is_a_new_current_version_and_the_last_one_previous(
    fake_client: AccountClient, moto_server: Moto, secret_name: str
) -> None:
    """Two rotations: AWSCURRENT holds the newest key, AWSPREVIOUS the one before it; each
    version's id is derived from its key's id.
    """
    async with aws_client(moto_server.url) as client:
        await _create(client, secret_name)
        sink = AwsSecretsManagerSink(secret_name, client=client)
        rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
        one = await rotator.rotate_now()
        two = await rotator.rotate_now()
        assert one.sink_errors == two.sink_errors == ()
        assert await _value(client, secret_name, "AWSCURRENT") == two.new_key.reveal()
        assert await _value(client, secret_name, "AWSPREVIOUS") == one.new_key.reveal()
        versions = await _versions(client, secret_name)
        assert versions[request_token(two.key_id)] == ["AWSCURRENT"]
        assert versions[request_token(one.key_id)] == ["AWSPREVIOUS"]


async def test_a_sink_down_during_the_rotation_catches_up_with_one_version(
    fake: Any, fake_client: AccountClient, moto_gate: Gate, moto_server: Moto, secret_name: str
) -> None:
    """Secrets Manager unreachable while the key rotates: the rotation completes, the
    failure is reported; once it is back, the next check puts the key, once.
    """
    async with aws_client(moto_server.url) as admin, aws_client(moto_gate.url) as client:
        placeholder = await _create(admin, secret_name)
        sink = AwsSecretsManagerSink(secret_name, client=client)
        rotator = KeyRotator(fake_client, store=MemoryKeyStore(), max_age=86400 * 30, sinks=[sink])
        moto_gate.mode = Mode.REFUSE
        event = await rotator.rotate_now()
        assert [f.sink for f in event.sink_errors] == [f"aws-sm:{secret_name}"]
        assert fake.is_active(event.new_key)
        assert rotator.current_key == event.new_key
        assert set(await _versions(admin, secret_name)) == {placeholder}
        moto_gate.mode = Mode.PASS
        await rotator.check()
        await rotator.check()
        versions = await _versions(admin, secret_name)
        assert set(versions) == {placeholder, request_token(event.key_id)}
        assert await _value(admin, secret_name, "AWSCURRENT") == event.new_key.reveal()
        assert await _value(admin, secret_name, "AWSPREVIOUS") == "placeholder"


async def test_a_publish_retried_after_a_lost_answer_makes_no_second_version(
    fake_client: AccountClient, moto_gate: Gate, moto_server: Moto, secret_name: str
) -> None:
    """The first PutSecretValue is applied but its answer is lost; the retry, with the same
    ClientRequestToken, finds the version made and makes no other.
    """
    async with aws_client(moto_server.url) as admin, aws_client(moto_gate.url) as client:
        placeholder = await _create(admin, secret_name)
        sink = AwsSecretsManagerSink(secret_name, client=client)
        rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
        moto_gate.drop_responses = 1
        event = await rotator.rotate_now()
        assert event.sink_errors == ()
        assert moto_gate.connections >= 2, "the first answer was lost and the put retried"
        versions = await _versions(admin, secret_name)
        assert set(versions) == {placeholder, request_token(event.key_id)}
        assert versions[request_token(event.key_id)] == ["AWSCURRENT"]


async def test_without_a_client_the_sink_opens_its_own_from_the_environment(
    fake_client: AccountClient,
    moto_server: Moto,
    secret_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `client=`: the default credential chain and `AWS_ENDPOINT_URL` are used."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_CREDENTIALS["aws_secret_access_key"])
    async with aws_client(moto_server.url) as admin:
        await _create(admin, secret_name)
        sink = AwsSecretsManagerSink(secret_name, region_name="us-east-1")
        rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
        event = await rotator.rotate_now()
        assert event.sink_errors == ()
        assert await _value(admin, secret_name, "AWSCURRENT") == event.new_key.reveal()


async def test_a_missing_secret_is_reported_with_its_error_code(
    fake_client: AccountClient, moto_server: Moto, secret_name: str
) -> None:
    """A secret that does not exist: the failure names AWS's error code, not the key."""
    async with aws_client(moto_server.url) as client:
        sink = AwsSecretsManagerSink(secret_name, client=client)
        rotator = KeyRotator(fake_client, store=MemoryKeyStore(), sinks=[sink])
        event = await rotator.rotate_now()
    message = str(event.sink_errors[0].error)
    assert "ResourceNotFoundException" in message
    assert event.new_key.reveal() not in message


def test_the_request_token_is_stable_and_fits_aws_bounds() -> None:
    """The same key id gives the same token; different ones differ; 32-64 characters."""
    assert request_token("key_a") == request_token("key_a")
    assert request_token("key_a") != request_token("key_b")
    assert 32 <= len(request_token("key_a")) <= 64


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((42,), {}, TypeError),
        (("",), {}, ValueError),
        (("name",), {"client": object()}, TypeError),
        (("name",), {"region_name": ""}, ValueError),
    ],
)
def test_arguments_are_checked(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    """A wrong secret id, client or region is refused at construction."""
    with pytest.raises(error):
        AwsSecretsManagerSink(*args, **kwargs)  # type: ignore[arg-type]
