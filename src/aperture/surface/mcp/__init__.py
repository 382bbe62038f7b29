"""The MCP surface: meta-tools over stdio and streamable HTTP."""

from aperture.surface.mcp.server import McpSurface
from aperture.surface.mcp.transport import Termination, http_app, serve_http, serve_stdio, until_terminated

__all__ = [
    "McpSurface",
    "Termination",
    "http_app",
    "serve_http",
    "serve_stdio",
    "until_terminated",
]
