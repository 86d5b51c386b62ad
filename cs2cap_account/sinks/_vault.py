"""`VaultKVSink`: the key in a field of a Vault (or OpenBao) KV v2 secret, check-and-set.

Over aiohttp, the SDK's own HTTP client, one session per publish (rotations are rare).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from cs2cap_account._secret import SecretKey
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.sinks._protocol import SinkError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["VaultKVSink"]

_TIMEOUT: Final = 20.0
# Reads and check-and-set writes per publish: another writer can win the race a few times.
_ROUNDS: Final = 3


@attrs.frozen
class _Current:
    """The secret as it stands: its fields and its version (0: none yet)."""

    data: Mapping[str, Any]
    version: int


class _Conflict(Exception):
    """The check-and-set lost to another writer: read again."""


class VaultKVSink:
    """Writes each new key to `field` of the KV v2 secret `path` on the mount `mount`.

    ```python
    VaultKVSink("https://vault.internal:8200", token=os.environ["VAULT_TOKEN"],
                path="cs2cap/prod")            # -> secret/data/cs2cap/prod, field api_key
    ```

    Each publish reads the secret; if `field` already holds the key, it is done (a
    retried publish makes no new version). Otherwise it writes the secret's other fields
    unchanged and `field` set to the key, with check-and-set on the version it read, so
    a write by anyone else in between is never overwritten: it reads and tries again.
    `token` needs read and update on `<mount>/data/<path>`. Plain `http://` is refused
    unless the host is loopback.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | SecretKey,
        mount: str = "secret",
        path: str,
        field: str = "api_key",
    ) -> None:
        self.url = _checked_url(url)
        if isinstance(token, str):
            if not token or token != token.strip():
                raise ValueError("token must be a Vault token, without surrounding whitespace")
            token = SecretKey(token)
        if not isinstance(token, SecretKey):
            raise TypeError(f"token must be a str or SecretKey, not {type(token).__name__}")
        self.mount = _checked_segment(mount, "mount")
        self.path = _checked_segment(path, "path")
        if not isinstance(field, str) or not field:
            raise ValueError("field must be a non-empty str")
        self.field = field
        self._token = token
        self.name = f"vault:{self.url}/{self.mount}/{self.path}"

    def __repr__(self) -> str:
        return f"VaultKVSink({self.url!r}, mount={self.mount!r}, path={self.path!r})"

    @property
    def _endpoint(self) -> str:
        return f"{self.url}/v1/{self.mount}/data/{self.path}"

    async def publish(self, event: RotationEvent) -> None:
        """Set `field` to `event`'s key (check-and-set); `SinkError` if it cannot."""
        failure = await self._publish(event)
        # Raised outside the handler: aiohttp's frames (holding the body, and so the key)
        # stay out of this error's context, for a reporter capturing locals.
        if failure is not None:
            raise SinkError(failure)

    async def _publish(self, event: RotationEvent) -> str | None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for _ in range(_ROUNDS):
                    current = await self._read(session)
                    if current.data.get(self.field) == event.new_key.reveal():
                        return None
                    try:
                        await self._write(session, current, event.new_key)
                    except _Conflict:
                        continue
                    return None
        except SinkError as exc:
            return str(exc)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"cannot reach Vault at {self.url}: {type(exc).__name__}"
        return f"{self._endpoint}: check-and-set lost to other writers {_ROUNDS} times"

    async def _read(self, session: aiohttp.ClientSession) -> _Current:
        async with session.get(self._endpoint, headers=self._headers()) as response:
            body = await response.json(content_type=None) if response.content_length != 0 else {}
            if response.status == 404:
                # No secret yet, or its latest version deleted: the metadata may say which.
                version = _version(body)
                return _Current({}, version or 0)
            if response.status != 200:
                raise SinkError(_refused("read", self._endpoint, response.status, body))
        data = body.get("data", {}) if isinstance(body, dict) else {}
        fields = data.get("data") or {}
        if not isinstance(fields, dict):
            raise SinkError(f"{self._endpoint} holds no KV v2 secret")
        return _Current(fields, _version(body) or 0)

    async def _write(
        self, session: aiohttp.ClientSession, current: _Current, key: SecretKey
    ) -> None:
        body = {
            "options": {"cas": current.version},
            "data": {**current.data, self.field: key.reveal()},
        }
        async with session.post(self._endpoint, json=body, headers=self._headers()) as response:
            answer = await response.json(content_type=None) if response.content_length != 0 else {}
            if response.status in (200, 204):
                return
            errors = (
                " ".join(map(str, answer.get("errors", []))) if isinstance(answer, dict) else ""
            )
            if response.status == 400 and "check-and-set" in errors:
                raise _Conflict
            raise SinkError(_refused("write", self._endpoint, response.status, answer))

    def _headers(self) -> dict[str, str]:
        return {"X-Vault-Token": self._token.reveal()}


def _version(body: object) -> int | None:
    data = body.get("data") if isinstance(body, dict) else None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    version = metadata.get("version") if isinstance(metadata, dict) else None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _refused(what: str, endpoint: str, status: int, body: object) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    detail = "; ".join(map(str, errors)) if isinstance(errors, list) and errors else "no detail"
    return f"Vault refused the {what} of {endpoint}: HTTP {status}: {detail}"


def _checked_url(url: object) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("url must not hold credentials, a query or a fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(f"url must use https for a host that is not loopback, got {url!r}")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_segment(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    text = value.strip("/")
    if not text or any(part in ("", ".", "..") for part in text.split("/")):
        raise ValueError(f"{name} must be a path like 'cs2cap/prod', not {value!r}")
    return text
