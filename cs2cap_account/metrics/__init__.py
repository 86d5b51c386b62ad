"""Instrumentation for operators: Prometheus metrics, OpenTelemetry traces, health endpoints.

```python
from cs2cap_account.metrics import instrument, trace

metrics = instrument(rotator=rotator, client=client)   # pip install "cs2cap-account[prometheus]"
tracing = trace(rotator=rotator, client=client)       # pip install "cs2cap-account[otel]"
```

- `instrument()` registers the rotator's and the client's metrics with a
  prometheus-client registry (`Metrics`; the names are listed in `docs/operating.md`);
- `trace()` makes a span per rotation, a child span per protocol step, and a span per
  HTTP attempt, with the OpenTelemetry API (`Tracing`);
- `serve()` (aiohttp.web) answers `/metrics`, `/livez` and `/readyz`, as
  `cs2cap-account rotate --metrics-port` does.

Each is imported on first use, with its extra: importing this package loads neither
prometheus-client nor OpenTelemetry until one of them is asked for. No metric label and
no span attribute ever holds a key: routes are templates (`/account/sub-keys/{id}`),
reasons and stages come from fixed lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cs2cap_account._lazy import lazy_attributes

if TYPE_CHECKING:
    from cs2cap_account.metrics._health import HealthServer, health_app, serve
    from cs2cap_account.metrics._otel import Tracing, trace
    from cs2cap_account.metrics._prometheus import Metrics, instrument

__all__ = ["HealthServer", "Metrics", "Tracing", "health_app", "instrument", "serve", "trace"]

_LAZY: Final = {
    "HealthServer": "cs2cap_account.metrics._health",
    "Metrics": "cs2cap_account.metrics._prometheus",
    "Tracing": "cs2cap_account.metrics._otel",
    "health_app": "cs2cap_account.metrics._health",
    "instrument": "cs2cap_account.metrics._prometheus",
    "serve": "cs2cap_account.metrics._health",
    "trace": "cs2cap_account.metrics._otel",
}


__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
