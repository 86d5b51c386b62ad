"""Public names imported on first use (PEP 562), for the package and its extras.

`import cs2cap_account` (or `cs2cap_account.sinks`, `cs2cap_account.metrics`) then costs
only what the name used needs: aiohttp, redis, aiobotocore, prometheus-client or
OpenTelemetry are imported by the module that holds the name, when it is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    namespace: dict[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's `__getattr__` and `__dir__`: each name in `where` from its module.

    `namespace` is the module's `globals()`; a name once imported is kept there, so the
    lookup runs once per name.
    """
    module_name = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
