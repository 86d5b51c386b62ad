"""Encryption at rest: with `cipher=`, neither Redis nor the key file holds a key in plaintext."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cs2cap_account import FileKeyStore, KeyStore, RedisKeyStore, StoreError

from ._records import SECRETS, full_record, leaked
from .conftest import RedisServer

if TYPE_CHECKING:
    from redis.asyncio import Redis

pytest.importorskip("cryptography")

from cryptography.fernet import Fernet

KEY = Fernet.generate_key()
OTHER_KEY = Fernet.generate_key()


@pytest.fixture(params=["redis", "file"])
async def kind(request: pytest.FixtureRequest) -> str:
    """Run the test on the Redis store and on the file store."""
    kind: str = request.param
    if kind == "redis":
        request.getfixturevalue("redis_server")
    return kind


OpenStore = Callable[["bytes | list[bytes] | None"], KeyStore]


@pytest.fixture
async def open_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, store_name: str
) -> AsyncIterator[OpenStore]:
    """Open handles on the test's store, each with the cipher given (or none); all closed
    after the test.
    """
    opened: list[KeyStore] = []

    def open_(cipher: bytes | list[bytes] | None) -> KeyStore:
        store: KeyStore
        if kind == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisKeyStore(server.url, name=store_name, cipher=cipher)
        else:
            store = FileKeyStore(tmp_path / "key.json", cipher=cipher)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.aclose()


async def stored_bytes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, store_name: str
) -> bytes:
    """Exactly what the store wrote: the Redis hash's record field, or the file."""
    if kind == "file":
        return (tmp_path / "key.json").read_bytes()
    async with redis_at(request) as client:
        value = await client.hget(f"{{{store_name}}}:record", "record")
    assert isinstance(value, bytes)
    return value


@asynccontextmanager
async def redis_at(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A client of the test's Redis server, closed on the way out."""
    from redis.asyncio import Redis

    server: RedisServer = request.getfixturevalue("redis_server")
    client = Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_stored_bytes_hold_no_key(
    kind: str,
    open_store: OpenStore,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store_name: str,
) -> None:
    """Saved with a cipher: the bytes at rest are a Fernet token that contains no key (nor
    even the key ids), and a handle with the same cipher key reads the record back whole.
    """
    await open_store(KEY).save(full_record(), expected_generation=None)
    raw = await stored_bytes(kind, request, tmp_path, store_name)
    assert raw.startswith(b"gAAAAA")
    assert leaked(raw.decode()) == []
    assert b"key_7" not in raw
    assert await open_store(KEY).load() == full_record()


async def test_a_wrong_cipher_key_is_a_clear_store_error(open_store: OpenStore) -> None:
    """Another Fernet key cannot read the record: `StoreError` says the key is wrong or the
    record was altered, and shows neither key nor plaintext.
    """
    await open_store(KEY).save(full_record(), expected_generation=None)
    with pytest.raises(StoreError, match="could not be decrypted") as caught:
        await open_store(OTHER_KEY).load()
    message = str(caught.value)
    assert "wrong" in message
    assert leaked(message) == []
    assert KEY.decode() not in message
    assert OTHER_KEY.decode() not in message
    assert caught.value.__cause__ is None


async def test_an_altered_record_does_not_open(
    kind: str,
    open_store: OpenStore,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store_name: str,
) -> None:
    """A token changed at rest fails authentication: `StoreError`, never a wrong record."""
    await open_store(KEY).save(full_record(), expected_generation=None)
    raw = bytearray(await stored_bytes(kind, request, tmp_path, store_name))
    raw[60] = ord("A") if raw[60] != ord("A") else ord("B")
    if kind == "file":
        (tmp_path / "key.json").write_bytes(bytes(raw))
    else:
        async with redis_at(request) as client:
            await client.hset(f"{{{store_name}}}:record", "record", bytes(raw))
    with pytest.raises(StoreError, match="could not be decrypted"):
        await open_store(KEY).load()


async def test_a_store_without_its_cipher_says_the_record_is_encrypted(
    open_store: OpenStore,
) -> None:
    """Reading an encrypted record with no cipher configured names the missing setting."""
    await open_store(KEY).save(full_record(), expected_generation=None)
    with pytest.raises(StoreError, match="encrypted record: pass the store its cipher"):
        await open_store(None).load()


async def test_a_plaintext_record_is_refused_by_a_store_with_a_cipher(
    open_store: OpenStore,
) -> None:
    """A cipher-configured store will not silently read a plaintext record."""
    await open_store(None).save(full_record(), expected_generation=None)
    with pytest.raises(StoreError, match="unencrypted record"):
        await open_store(KEY).load()


async def test_the_cipher_key_itself_can_be_rotated(open_store: OpenStore) -> None:
    """With a list of keys the first encrypts and any decrypts: a record written with the
    old key is read, and the next save is readable with the new key alone.
    """
    await open_store(KEY).save(full_record(), expected_generation=None)
    both = open_store([OTHER_KEY, KEY])
    record = await both.load()
    assert record == full_record()
    await both.save(record, expected_generation=record.generation)
    assert await open_store(OTHER_KEY).load() == full_record()


@pytest.mark.parametrize("bad", [b"", b"not-a-fernet-key", "x" * 44, []])
def test_a_malformed_cipher_key_is_a_value_error(bad: bytes | str | list[bytes]) -> None:
    """Anything but Fernet keys is refused when the store is made, without echoing it."""
    with pytest.raises(ValueError, match="Fernet key") as caught:
        FileKeyStore("unused.json", cipher=bad)
    assert "not-a-fernet-key" not in str(caught.value)


def test_the_cipher_hides_in_reprs(tmp_path: Path) -> None:
    """No repr shows the cipher key."""
    store = FileKeyStore(tmp_path / "k.json", cipher=KEY)
    assert KEY.decode() not in repr(store)
    assert KEY.decode() not in repr(store._cipher)
    assert all(secret.reveal() not in repr(store) for secret in SECRETS)


async def test_an_encrypted_file_is_still_private(tmp_path: Path) -> None:
    """The encrypted key file keeps mode 0600, like a plaintext one."""
    path = tmp_path / "k.json"
    await FileKeyStore(path, cipher=KEY).save(full_record(), expected_generation=None)
    assert os.stat(path).st_mode & 0o777 == 0o600
