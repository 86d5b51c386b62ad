"""The health and metrics endpoints of a rotator (aiohttp.web), for probes and scrapers.

- `GET /metrics`: the registry in the Prometheus text format (prometheus-client's own
  exposition);
- `GET /livez`: 200 while the process runs;
- `GET /readyz`: 200 when the key in force is known and authenticates, the store can be
  read and nothing is halted (`RotatorStatus.ready`); 503 otherwise, with a JSON body
  listing why (`{"ready": false, "reasons": [...]}`). A key nothing has tried yet (one
  adopted from the store since the last check) is tried once (`status(verify=True)`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs
from aiohttp import web

from cs2cap_account._secret import redact_text
from cs2cap_account.rotation._rotator import KeyRotator
from cs2cap_account.rotation._status import not_ready

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["HealthServer", "health_app", "serve"]


def health_app(rotator: KeyRotator, registry: CollectorRegistry | None = None) -> web.Application:
    """An aiohttp application answering `/livez`, `/readyz` and (with `registry`) `/metrics`."""
    if not isinstance(rotator, KeyRotator):
        raise TypeError(f"rotator must be a KeyRotator, not {type(rotator).__name__}")

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def readyz(_: web.Request) -> web.Response:
        status = await rotator.status(verify=True)
        reasons = [redact_text(reason) for reason in not_ready(status)]
        body: dict[str, object] = {
            "ready": not reasons,
            "generation": status.generation,
            "key_id": status.key_id,
        }
        if reasons:
            body["reasons"] = reasons
        return web.json_response(body, status=503 if reasons else 200, dumps=json.dumps)

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    if registry is not None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app.router.add_get("/metrics", metrics)
    return app


@attrs.define
class HealthServer:
    """A running `health_app`: where it listens, and how to stop it (`aclose()`)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL it answers at (`http://host:port`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def aclose(self) -> None:
        """Stop listening and close the application."""
        await self.runner.cleanup()


async def serve(
    rotator: KeyRotator,
    registry: CollectorRegistry | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> HealthServer:
    """Serve `health_app(rotator, registry)` on `host:port` (0: any free port) until closed."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535, got {port!r}")
    runner = web.AppRunner(health_app(rotator, registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses  # (host, port, ...) of each listening socket
    bound = int(addresses[0][1]) if addresses else port
    return HealthServer(runner, host, bound)
