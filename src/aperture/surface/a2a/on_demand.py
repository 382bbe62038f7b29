"""The A2A surface, loaded by its first request.

`aperture serve --transport http` serves A2A beside MCP, but the `a2a-sdk` and what it brings (grpcio,
protobuf, its own httpx, culsans) hold about 27 MB of the gateway's memory, which a gateway whose clients speak
only MCP never needs. `OnDemandA2a.beside(app)` answers A2A's paths (the agent card, `{path}` and below) with
`A2aSurface`, made when the first request to one of them comes (the SDK is imported in a worker thread, so
the event loop goes on serving MCP meanwhile), and everything else, the lifespan included, with `app`.

This module imports none of the SDK.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from aperture.gateway import Gateway
    from aperture.surface.a2a.app import A2aSurface

logger = logging.getLogger(__name__)

CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")
"""Where the agent card is served: the SDK's well-known path (`AGENT_CARD_WELL_KNOWN_PATH`), and the one 0.2
clients fetch."""


def under(route: str, path: str) -> bool:
    """Whether `route` is A2A's `path` or below it (the bindings' routes)."""
    return route == path or route.startswith(path + "/")


class OnDemandA2a:
    """The A2A agent of one gateway, made on the first A2A request. Call `aclose()` when the server stops."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.path = gateway.config.server.a2a.path
        self.surface: A2aSurface | None = None
        self._app: ASGIApp | None = None
        self._lock = anyio.Lock()

    def beside(self, other: ASGIApp) -> ASGIApp:
        """An ASGI app serving A2A's paths (once loaded, through `A2aSurface.beside(other)`) and everything else
        from `other`."""

        async def route(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and (scope["path"] in CARD_PATHS or under(scope["path"], self.path)):
                try:
                    app = self._app if self._app is not None else await self._load(other)
                except ImportError as exc:  # a broken install: say so to the caller, keep serving MCP
                    logger.warning("A2A cannot be served: %s", exc)
                    app = JSONResponse(
                        {
                            "error": f"A2A is not available on this gateway ({exc}). Use MCP at its endpoint, or "
                            "ask the operator to reinstall the 'a2a' extra.",
                        },
                        status_code=503,
                    )
                await app(scope, receive, send)
                return
            await other(scope, receive, send)

        return route

    async def _load(self, other: ASGIApp) -> ASGIApp:
        async with self._lock:
            app = self._app
            if app is None:
                module = await anyio.to_thread.run_sync(importlib.import_module, "aperture.surface.a2a.app")
                surface = self.surface = module.A2aSurface(self.gateway)
                app = self._app = surface.beside(other)
                logger.info("A2A: the surface is loaded (first A2A request)")
        return app

    async def aclose(self) -> None:
        """Stop the A2A tasks still running, if the surface was ever loaded."""
        if self.surface is not None:
            await self.surface.aclose()
