"""`follow_rotations`: keep the official `cs2cap` SDK's `Configuration` on the current key.

```python
configuration = cs2cap.Configuration(host="https://api.cs2c.app")
follow_rotations(rotator, configuration)
prices = cs2cap.PricesApi(cs2cap.ApiClient(configuration))
```

Needs the `cs2cap` extra (`pip install 'cs2cap-account[cs2cap]'`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cs2cap_account.integrations._refusal import checked_rotator

if TYPE_CHECKING:
    import cs2cap

    from cs2cap_account.rotation._event import RotationEvent
    from cs2cap_account.rotation._rotator import KeyRotator

__all__ = ["follow_rotations"]


def follow_rotations(rotator: KeyRotator, configuration: cs2cap.Configuration) -> None:
    """Make `configuration` authenticate with `rotator.current_key`, now and after each rotation.

    Each request the official SDK builds from `configuration` reads the key in force at
    that moment, from the instant the rotator switched to it (before its verification,
    sinks and callbacks); `configuration.access_token` is kept equal to it too. The
    official SDK is synchronous and has no hook to resend a refused request, so a call
    already in flight at the instant of a reissue can still be answered 401; the next
    call uses the new key. For no such window, use `integrations.aiohttp.KeyMiddleware`
    or `integrations.httpx.KeyAuth`, which resend once.
    """
    rotator = checked_rotator(rotator)
    try:
        import cs2cap
    except ImportError:
        raise ImportError(
            'follow_rotations needs the official SDK: pip install "cs2cap-account[cs2cap]"'
        ) from None
    if not isinstance(configuration, cs2cap.Configuration):
        raise TypeError(
            f"configuration must be a cs2cap.Configuration, not {type(configuration).__name__}"
        )
    configuration.access_token = rotator.current_key.reveal()

    def auth_settings() -> dict[str, Any]:
        """The SDK's bearer setting, with the key in force now."""
        token = rotator.current_key.reveal()
        configuration.access_token = token
        return {
            "BearerAuth": {
                "type": "bearer",
                "in": "header",
                "key": "Authorization",
                "value": "Bearer " + token,
            }
        }

    def follow(event: RotationEvent) -> None:
        configuration.access_token = event.new_key.reveal()

    # An attribute of this instance, shadowing the method: the SDK calls it per request.
    vars(configuration)["auth_settings"] = auth_settings
    rotator.on_rotate(follow)
