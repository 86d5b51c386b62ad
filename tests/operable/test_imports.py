"""The extras are imported only when used."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(code: str) -> set[str]:
    """The top-level packages and `cs2cap_account` modules loaded after running `code`."""
    probe = (
        f"{code}; import json, sys; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('prometheus_client', 'opentelemetry') "
        "or m.startswith('cs2cap_account.metrics'))))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(done.stdout))


def test_importing_the_package_loads_no_extra() -> None:
    """`import cs2cap_account` (and its rotator) loads neither the metrics nor an extra."""
    assert loaded_after("import cs2cap_account; cs2cap_account.KeyRotator") == set()


def test_the_metrics_package_loads_each_extra_on_first_use() -> None:
    """`cs2cap_account.metrics` alone loads no extra; `instrument` loads prometheus-client
    only, `trace` OpenTelemetry only.
    """
    assert loaded_after("import cs2cap_account.metrics") == {"cs2cap_account.metrics"}
    prometheus = loaded_after("from cs2cap_account.metrics import instrument")
    assert any(m.startswith("prometheus_client") for m in prometheus)
    assert not any(m.startswith("opentelemetry") for m in prometheus)
    otel = loaded_after("from cs2cap_account.metrics import trace")
    assert any(m.startswith("opentelemetry") for m in otel)
    assert not any(m.startswith("prometheus_client") for m in otel)
