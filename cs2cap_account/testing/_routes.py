"""The eight Account API routes the fake serves, by stable name."""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["API_PREFIX", "ROUTES", "ROUTE_NAMES", "Route"]

API_PREFIX: Final = "/v1"


@attrs.frozen
class Route:
    """One route: its stable name (used by fault scripting and counters), method and path.

    `management` routes (reissue and every sub-key route) refuse child keys with 403.
    """

    name: str
    method: str
    path: str
    management: bool


ROUTES: Final[tuple[Route, ...]] = (
    Route("get_key", "GET", "/account/key", management=False),
    Route("reissue_key", "POST", "/account/key/reissue", management=True),
    Route("list_sub_keys", "GET", "/account/sub-keys", management=True),
    Route("create_sub_key", "POST", "/account/sub-keys", management=True),
    Route("get_sub_key", "GET", "/account/sub-keys/{key_id}", management=True),
    Route("update_sub_key", "PATCH", "/account/sub-keys/{key_id}", management=True),
    Route("delete_sub_key", "DELETE", "/account/sub-keys/{key_id}", management=True),
    Route("reissue_sub_key", "POST", "/account/sub-keys/{key_id}/reissue", management=True),
)

ROUTE_NAMES: Final[frozenset[str]] = frozenset(route.name for route in ROUTES)
