"""Each toolset as a virtual MCP server at `{path}/{toolset}` (`/mcp/readonly`).

An ASGI layer behind authentication and in front of both call paths (the SDK's and the lean one): a request
to `/mcp/{toolset}` is served as one to `/mcp` with `current_toolset` set, which the gateway's one visibility
seam (`Gateway.access`) reads. The SDK hands a request's context variables to the handlers it runs for it,
so every handler of that request, on either path, sees the toolset.

A name the caller cannot be served is answered 404, with the toolsets it may use and nothing else. A caller
bound to toolsets is served whatever name it gives (it sees its own toolsets at any path), so a 404 never
tells it which other toolsets exist.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from aperture.gateway import Gateway
from aperture.ops.access import current_toolset


class ToolsetPaths:
    """Serves `{path}/{toolset}` as `{path}` with the toolset set; see the module docstring."""

    def __init__(self, app: ASGIApp, gateway: Gateway, *, path: str) -> None:
        self._app = app
        self._gateway = gateway
        self._path = path
        self._prefix = path.rstrip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "") if scope["type"] == "http" else ""
        name = route[len(self._prefix) :] if route.startswith(self._prefix) else ""
        if not name or "/" in name:
            await self._app(scope, receive, send)
            return
        if not self._gateway.serves_toolset(name):
            await _not_found(send, self._message(name))
            return
        inner = dict(scope, path=self._path, raw_path=self._path.encode())
        token = current_toolset.set(name)
        try:
            await self._app(inner, receive, send)
        finally:
            current_toolset.reset(token)

    def _message(self, name: str) -> str:
        usable = self._gateway.usable_toolsets()
        listed = ", ".join(f"{self._prefix}{n}" for n in usable)
        toolsets = f"Toolsets: {listed}." if usable else "No toolsets are configured."
        return f"No toolset {name[:64]!r} here. {toolsets} The whole catalog is at {self._path}."


async def _not_found(send: Send, message: str) -> None:
    body = json.dumps({"error": "not_found", "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})
