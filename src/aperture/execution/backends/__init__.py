"""Backends that ship with Aperture, one module each."""

import os

# The A2A SDK (the `a2a` backend, the A2A surface) wraps each of its calls in an OpenTelemetry span unless told
# not to, which it reads once, when first imported: off unless the operator says otherwise. Aperture's observe
# layer makes the spans that matter (one per tool call, naming the surface); the SDK's cost on every request.
# (Set here: it runs before this package's a2a module imports the SDK; the A2A surface imports it first too.)
os.environ.setdefault("OTEL_INSTRUMENTATION_A2A_SDK_ENABLED", "false")

from aperture.execution.backends.mcp import McpBackend
from aperture.execution.backends.mcp_upstream import HttpTarget, RestartPolicy, StdioTarget, UpstreamState
from aperture.execution.backends.python import PythonBackend, ToolSpec, tool

__all__ = [
    "HttpTarget",
    "McpBackend",
    "PythonBackend",
    "RestartPolicy",
    "StdioTarget",
    "ToolSpec",
    "UpstreamState",
    "tool",
]
