"""The A2A surface: the gateway as an Agent2Agent agent on the official `a2a-sdk` (the `a2a` extra), beside MCP.

The names below load on first use: `aperture.surface.a2a.on_demand` (what `aperture serve` mounts) imports
none of the SDK, which it loads when the first A2A request comes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import aperture.execution.backends  # noqa: F401  (first: it switches the SDK's own tracing off, see there)

if TYPE_CHECKING:
    from aperture.surface.a2a.app import A2aSurface, BodyLimit
    from aperture.surface.a2a.executor import GatewayExecutor
    from aperture.surface.a2a.handler import GatewayRequestHandler
    from aperture.surface.a2a.on_demand import OnDemandA2a
    from aperture.surface.a2a.operations import Operation, operation_of
    from aperture.surface.a2a.tasks import BoundedTaskStore, CallerContextBuilder, CallerUser

_LAZY = {
    "A2aSurface": "app",
    "BodyLimit": "app",
    "BoundedTaskStore": "tasks",
    "CallerContextBuilder": "tasks",
    "CallerUser": "tasks",
    "GatewayExecutor": "executor",
    "GatewayRequestHandler": "handler",
    "OnDemandA2a": "on_demand",
    "Operation": "operations",
    "operation_of": "operations",
}

__all__ = [
    "A2aSurface",
    "BodyLimit",
    "BoundedTaskStore",
    "CallerContextBuilder",
    "CallerUser",
    "GatewayExecutor",
    "GatewayRequestHandler",
    "OnDemandA2a",
    "Operation",
    "operation_of",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
