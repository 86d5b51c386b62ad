"""The verdict on a root-key reissue whose response went missing: a pure function.

A `POST /account/key/reissue` that failed after it was sent may or may not have taken
effect. The client then asks the server, with the credential it reissued with, which root
key is in force (`GET /account/key`), and `verdict()` reads the answer:

| credential | what the probe saw                          | verdict          |
|------------|---------------------------------------------|------------------|
| API key    | 200, the same key, active                   | `RETRY`          |
| API key    | 401, revoked or invalid                     | `LOST`           |
| API key    | 200, another key or an inactive one         | `UNKNOWN`        |
| session JWT| 200, the same root key, active              | `RETRY`          |
| session JWT| 200, another root key                       | `REPLACE_LOST`   |
| session JWT| 401 (any code)                              | `UNKNOWN`        |
| either     | no answer (network, 5xx, a malformed body)  | `UNKNOWN`        |

`RETRY`: the reissue provably did not happen, send it again. `LOST`: it happened, the old
key is revoked and the new one is gone (`KeyLostError`). `REPLACE_LOST` (session JWT only):
it happened and the lost key is now the active root key; reissuing again revokes only that
lost key. `UNKNOWN`: nothing proves either way (`ReissueOutcomeUnknownError`).

A retry that the server refuses as revoked after a probe said "nothing happened" is read
the same way, as a probe answering 401: the first attempt was still in flight and landed.

A child-key reissue (`POST /account/sub-keys/{id}/reissue`) is probed with the root
credential, on the old child (`GET /account/sub-keys/{id}`), and `child_verdict()` reads
it: 200 and active, `RETRY`; 200 and inactive, or 404, `LOST` (the reissue revoked it; the
new child exists, its plaintext gone); anything else `UNKNOWN`. A retry refused with 404
after a probe said "nothing happened" is read as a 404 probe: the first attempt landed.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

__all__ = [
    "Answered",
    "ChildProbe",
    "Gone",
    "NoAnswer",
    "ProbeResult",
    "Refused",
    "Verdict",
    "child_verdict",
    "verdict",
]

# A probe answering 401 with one of these codes proves the probed key was revoked.
REVOKED_CODES: Final = frozenset({None, "AUTH_API_KEY_REVOKED", "AUTH_INVALID_API_KEY"})


class Verdict(enum.Enum):
    """What to do about a reissue that failed after it was sent."""

    RETRY = "retry"
    LOST = "lost"
    REPLACE_LOST = "replace-lost"
    UNKNOWN = "unknown"


@attrs.frozen
class Answered:
    """The probe got 200: the root key in force, and whether it is active."""

    key_id: str
    is_active: bool


@attrs.frozen
class Refused:
    """The probe got 401, with this error code."""

    code: str | None


@attrs.frozen
class NoAnswer:
    """The probe got no usable answer (a connection error, a 5xx, a malformed body)."""


@attrs.frozen
class Gone:
    """The probe of a child key got 404: no active child has that id any more."""


ProbeResult = Answered | Refused | NoAnswer
ChildProbe = Answered | Gone | Refused | NoAnswer


def verdict(before_id: str, seen: ProbeResult, *, via_jwt: bool) -> Verdict:
    """Read a probe taken after a reissue failed: see the module's table.

    `before_id` is the root key id in force before the reissue was sent; `via_jwt` says
    whether the reissue (and so the probe) used a session JWT rather than the API key.
    """
    if isinstance(seen, Refused):
        return Verdict.LOST if not via_jwt and seen.code in REVOKED_CODES else Verdict.UNKNOWN
    if isinstance(seen, NoAnswer):
        return Verdict.UNKNOWN
    if seen.key_id == before_id and seen.is_active:
        return Verdict.RETRY
    return Verdict.REPLACE_LOST if via_jwt else Verdict.UNKNOWN


def child_verdict(seen: ChildProbe) -> Verdict:
    """Read a probe of the old child, taken after its reissue failed once sent."""
    if isinstance(seen, Gone):
        return Verdict.LOST
    if isinstance(seen, Answered):
        return Verdict.RETRY if seen.is_active else Verdict.LOST
    return Verdict.UNKNOWN
