"""`AwsSecretsManagerSink`: each new key a new version of a secret, on aiobotocore.

Needs the `aws` extra (`pip install 'cs2cap-account[aws]'`); aiobotocore is imported
only when a key is published.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import AsyncExitStack
from typing import Any, Final

from cs2cap_account._secret import redact_text
from cs2cap_account.rotation._event import RotationEvent
from cs2cap_account.sinks._protocol import SinkError

__all__ = ["AwsSecretsManagerSink", "request_token"]

# The namespace of the version ids this sink derives from key ids (a fixed, random UUID).
_TOKENS: Final = uuid.UUID("5f0c3d4e-8f5b-4c47-9a3e-2b7d2f6c1a90")
_CONNECT_TIMEOUT: Final = 10.0
_READ_TIMEOUT: Final = 20.0


class _RedactKeys(logging.Filter):
    """Redacts keys in botocore's DEBUG records, which show each request's body."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            return True
        redacted = redact_text(text)
        if redacted != text:
            record.msg, record.args = redacted, None
        return True


_REDACT: Final = _RedactKeys()


def _redact_botocore_logs() -> None:
    """Put `_REDACT` on every botocore and aiobotocore logger (filters do not inherit)."""
    names = [
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name.split(".")[0] in ("botocore", "aiobotocore")
    ]
    for name in names:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


def request_token(key_id: str) -> str:
    """The `ClientRequestToken` (the version id) for the key `key_id` (pure).

    The same key always gives the same token, so a retried `PutSecretValue` (one whose
    answer was lost) finds its version made already and makes no second one.
    """
    return str(uuid.uuid5(_TOKENS, key_id))


class AwsSecretsManagerSink:
    """Puts each new key in the AWS Secrets Manager secret `secret_id` (name or ARN).

    `PutSecretValue` with the key as `SecretString` and a `ClientRequestToken` derived
    from the key's id: the new version becomes `AWSCURRENT` and the one before it
    `AWSPREVIOUS` (so consumers still reading the old version find it during the swap),
    and a retried publish is idempotent. The secret must exist already.

    `client`: an aiobotocore `secretsmanager` client you opened (its credentials,
    endpoint and retries are yours). Without one, each publish opens its own client with
    the default credential chain, `region_name` (or the environment's region) and
    botocore's retries turned off: the rotator retries the publish with its own backoff.
    botocore's DEBUG logs show each request's body: the sink redacts keys in them.
    """

    def __init__(
        self, secret_id: str, *, client: Any = None, region_name: str | None = None
    ) -> None:
        if not isinstance(secret_id, str) or not secret_id:
            raise (TypeError if not isinstance(secret_id, str) else ValueError)(
                "secret_id must be a non-empty str (the secret's name or ARN)"
            )
        if client is not None and not callable(getattr(client, "put_secret_value", None)):
            raise TypeError(
                f"client must be an aiobotocore secretsmanager client, not {type(client).__name__}"
            )
        if region_name is not None and (not isinstance(region_name, str) or not region_name):
            raise ValueError("region_name must be a non-empty str or None")
        self.secret_id = secret_id
        self.region_name = region_name
        self._client = client
        self.name = f"aws-sm:{secret_id}"

    def __repr__(self) -> str:
        return f"AwsSecretsManagerSink({self.secret_id!r})"

    async def publish(self, event: RotationEvent) -> None:
        """Put `event`'s key as the secret's new `AWSCURRENT` version; `SinkError` if not."""
        failure = await self._put(event)
        # Raised here, outside the handler: botocore's frames (which hold the request and
        # so the key) are not in this error's context, for a reporter capturing locals.
        if failure is not None:
            raise SinkError(failure)

    async def _put(self, event: RotationEvent) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with AsyncExitStack() as stack:
                client = self._client or await stack.enter_async_context(self._new_client())
                _redact_botocore_logs()  # the loggers exist once a client does
                await client.put_secret_value(
                    SecretId=self.secret_id,
                    ClientRequestToken=request_token(event.key_id),
                    SecretString=event.new_key.reveal(),
                )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return (
                f"PutSecretValue on {self.secret_id} failed: {error.get('Code', 'error')}: "
                f"{error.get('Message', '')}"
            )
        except BotoCoreError as exc:
            return f"PutSecretValue on {self.secret_id} failed: {type(exc).__name__}: {exc}"
        except Exception as exc:  # the HTTP layer under botocore (aiohttp), or a bad answer
            return f"PutSecretValue on {self.secret_id} failed: {type(exc).__name__}"
        return None

    def _new_client(self) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            retries={"total_max_attempts": 1},
            connect_timeout=_CONNECT_TIMEOUT,
            read_timeout=_READ_TIMEOUT,
        )
        return get_session().create_client(
            "secretsmanager", region_name=self.region_name, config=config
        )
