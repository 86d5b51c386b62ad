"""Label values from fixed lists, so no metric label or span attribute can carry a key.

A route is the template of a path (`/account/sub-keys/{id}`); a rotation's reason is
one of the rotator's own, any caller's text being `"manual"`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHILD_REASONS", "REASONS", "ROUTES", "child_reason_label", "reason_label", "route_of"]

ROUTES: Final = (
    "/account/key",
    "/account/key/reissue",
    "/account/sub-keys",
    "/account/sub-keys/{id}",
    "/account/sub-keys/{id}/reissue",
)
REASONS: Final = ("manual", "max_age", "before_expiry", "expired", "recovery", "adopted")
CHILD_REASONS: Final = ("manual", "max_age", "recovery", "adopted")
_SUB_KEY: Final = "/account/sub-keys/"
_FIXED: Final = frozenset(ROUTES[:3])


def route_of(path: str) -> str:
    """The route template of a request path (a base URL's path before it is ignored).

    `"other"` for a path outside the Account API's routes.
    """
    start = path.find("/account/")
    if start < 0:
        return "other"
    if start:
        path = path[start:]
    if path in _FIXED:
        return path
    if path.startswith(_SUB_KEY) and len(path) > len(_SUB_KEY):
        rest = path[len(_SUB_KEY) :]
        if "/" not in rest:
            return "/account/sub-keys/{id}"
        if rest.count("/") == 1 and rest.endswith("/reissue"):
            return "/account/sub-keys/{id}/reissue"
    return "other"


def reason_label(reason: str) -> str:
    """A rotation's reason as a label: one of `REASONS` (a caller's own text: `manual`)."""
    return reason if reason in REASONS else "manual"


def child_reason_label(reason: str) -> str:
    """A child rotation's reason as a label: one of `CHILD_REASONS` (else `manual`)."""
    return reason if reason in CHILD_REASONS else "manual"
