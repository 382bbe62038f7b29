"""The MCP surface: meta-tools over stdio and streamable HTTP."""

from aperture.surface.mcp.metatools import META_TOOLS, MetaTool
from aperture.surface.mcp.server import McpSurface
from aperture.surface.mcp.transport import Termination, http_app, serve_http, serve_stdio, until_terminated

__all__ = [
    "META_TOOLS",
    "McpSurface",
    "MetaTool",
    "Termination",
    "http_app",
    "serve_http",
    "serve_stdio",
    "until_terminated",
]
