"""The A2A surface: the gateway as an Agent2Agent agent on the official `a2a-sdk` (the `a2a` extra), beside MCP."""

import aperture.execution.backends  # noqa: F401  (first: it switches the SDK's own tracing off, see there)
from aperture.surface.a2a.app import A2aSurface, BodyLimit
from aperture.surface.a2a.executor import GatewayExecutor
from aperture.surface.a2a.handler import GatewayRequestHandler
from aperture.surface.a2a.operations import Operation, operation_of
from aperture.surface.a2a.tasks import BoundedTaskStore, CallerContextBuilder, CallerUser

__all__ = [
    "A2aSurface",
    "BodyLimit",
    "BoundedTaskStore",
    "CallerContextBuilder",
    "CallerUser",
    "GatewayExecutor",
    "GatewayRequestHandler",
    "Operation",
    "operation_of",
]
