"""An aiohttp web app whose outgoing CS2Cap calls survive a root-key rotation.

Every handler calls CS2Cap through one shared `AccountClient`. A `KeyRotator` attached to
the app rotates the root key on a schedule for as long as the app runs; the client
switches to each new key the moment it is saved. A call that was already on its way with
the old key when the server revoked it is refused with a 401; the client waits until the
rotation has switched it to the new key and sends the call again. If another process
sharing the key store rotates the key, the first call refused reloads the key from the
store and is sent again. Either way the handler never sees the 401.

Run it against the real API, then `curl localhost:8080/key`:

    CS2C_API_KEY=sk_live_root_... python aiohttp_app.py
"""

from __future__ import annotations

import datetime as dt
import os

from aiohttp import web

from cs2cap_account import AccountClient, CS2CapError, FileKeyStore, KeyRotator, KeyStore

MAX_AGE = dt.timedelta(days=30)
CLIENT = web.AppKey("cs2cap_client", AccountClient)
ROTATOR = web.AppKey("cs2cap_rotator", KeyRotator)


async def show_key(request: web.Request) -> web.Response:
    """`GET /key`: the root key's metadata (never the key itself)."""
    try:
        info = await request.app[CLIENT].get_key()
    except CS2CapError as exc:  # the SDK's messages never contain a key
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(
        {
            "key_id": info.id,
            "created_at": info.created_at.isoformat(),
            "requests_per_minute": info.effective_rate_requests_per_minute,
        }
    )


async def list_sub_keys(request: web.Request) -> web.Response:
    """`GET /sub-keys`: the names of the account's child keys, every page of them."""
    sub_keys = request.app[CLIENT].sub_keys
    try:
        found = [detail.key.name async for detail in sub_keys.iterate()]
    except CS2CapError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response({"sub_keys": found})


def create_app(
    client: AccountClient,
    *,
    store: KeyStore | None = None,
    max_age: dt.timedelta = MAX_AGE,
    recovery_token: str | None = None,
) -> web.Application:
    """The web app: handlers call CS2Cap through `client`, whose key the rotator rotates."""
    app = web.Application()
    app[CLIENT] = client
    app[ROTATOR] = rotator = KeyRotator(
        client, store=store, max_age=max_age, recovery_token=recovery_token
    )
    rotator.attach(app)  # the schedule runs from the app's startup to its cleanup
    app.router.add_get("/key", show_key)
    app.router.add_get("/sub-keys", list_sub_keys)
    return app


async def app_from_env() -> web.Application:
    """The app as deployed: the key from `CS2C_API_KEY`, the store file `CS2C_KEY_STORE`."""
    client = AccountClient()  # CS2C_API_KEY, and CS2C_API_BASE if set
    app = create_app(
        client,
        store=FileKeyStore(os.environ.get("CS2C_KEY_STORE", "cs2cap-key.json")),
        recovery_token=os.environ.get("CS2C_SESSION_TOKEN"),  # recovers a lost reissue
    )

    async def close_client(_app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close_client)  # runs after the rotator has stopped
    return app


def main() -> None:
    """Serve the app on port `$PORT` (default 8080) until interrupted."""
    web.run_app(app_from_env(), port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
