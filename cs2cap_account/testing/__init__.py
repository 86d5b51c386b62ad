"""A stateful fake of the CS2Cap Account API, for tests and local development.

`FakeCS2CapAPI` serves all eight `/v1/account/...` routes from an in-memory account on
`127.0.0.1`, with the API's errors, rate limits and headers, plus scriptable faults::

    from cs2cap_account.testing import FakeCS2CapAPI

    async with FakeCS2CapAPI(tier="quant") as api:
        api.faults.drop_after_commit("reissue_key")
        ...

Without a socket, and without starting the fake: `AccountClient(api_key=api.root_key,
transport=api.transport())` sends through the same routes, handlers and faults.

With pytest, the `fake_cs2cap` and `cs2cap_client` fixtures come from this package's
plugin (see `cs2cap_account.testing.plugin`). From a shell: `cs2cap-account mock-server`.
Nothing here is imported by `import cs2cap_account`.
"""

from cs2cap_account.testing._faults import (
    ANY_ROUTE,
    HTML_502_PAGE,
    ChaosSettings,
    Fault,
    FaultInjector,
    FaultKind,
)
from cs2cap_account.testing._routes import ROUTE_NAMES
from cs2cap_account.testing._seams import after_step, rotation_task, running_tasks
from cs2cap_account.testing._server import (
    FakeCS2CapAPI,
    IssuedKey,
    live_fakes,
    tracking_fakes,
)
from cs2cap_account.testing._state import MAX_CHILD_KEYS, TIERS, TierLimits
from cs2cap_account.testing._transport import InProcessTransport

__all__ = [
    "ANY_ROUTE",
    "HTML_502_PAGE",
    "MAX_CHILD_KEYS",
    "ROUTE_NAMES",
    "TIERS",
    "ChaosSettings",
    "FakeCS2CapAPI",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "InProcessTransport",
    "IssuedKey",
    "TierLimits",
    "after_step",
    "live_fakes",
    "rotation_task",
    "running_tasks",
    "tracking_fakes",
]
