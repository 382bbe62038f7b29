"""Backends that ship with Aperture, one module each."""

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
