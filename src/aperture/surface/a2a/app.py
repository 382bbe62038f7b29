"""The A2A surface over HTTP: the agent card at the well-known path (public), and the SDK's JSON-RPC binding
(`POST {path}`) and HTTP+JSON binding (`{path}/message:send`, `{path}/tasks/{id}`, ...) behind the same
authentication as MCP. `A2aSurface.beside(app)` serves them next to another ASGI app (the MCP endpoint)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from a2a.types import AgentCard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.ops.http import OpsHttpApp
from aperture.surface.a2a.card import agent_card
from aperture.surface.a2a.executor import GatewayExecutor
from aperture.surface.a2a.handler import GatewayRequestHandler
from aperture.surface.a2a.on_demand import CARD_PATHS, under
from aperture.surface.a2a.tasks import BASE_URL_STATE, BoundedTaskStore, CallerContextBuilder, identity_in

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext

    from aperture.gateway import Gateway

logger = logging.getLogger(__name__)


class A2aSurface:
    """The A2A agent of one gateway: the card, the request handler over a bounded task store, the ASGI app.

    Call `aclose()` when the server stops: tasks still running are cancelled (and their backend calls with them).
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.config.server.a2a
        self.path = self.settings.path
        self.executor = GatewayExecutor(gateway)
        self.store = BoundedTaskStore(self.settings.max_tasks, self.settings.task_ttl)
        placeholder = self.card("http://127.0.0.1")  # the handler reads capabilities from it; URLs are per request
        self.handler = GatewayRequestHandler(
            self.executor,
            task_store=self.store,
            agent_card=placeholder,
            extended_agent_card=placeholder if gateway.requires_auth else None,
            extended_card_modifier=self._extended_card,
        )

    def card(self, base_url: str, *, extended: bool = False) -> AgentCard:
        """The agent card for callers reaching the gateway at `base_url` (see `aperture.surface.a2a.card`)."""
        return agent_card(self.gateway, base_url, self.path, extended=extended)

    def base_url(self, request: Request) -> str:
        """Where the caller reached the gateway: `server.a2a.public_url`, else the request's scheme and Host."""
        if self.settings.public_url:
            return self.settings.public_url
        host = request.headers.get("host") or "{}:{}".format(*(request.scope.get("server") or ("127.0.0.1", 80)))
        return f"{request.url.scheme}://{host}"

    async def _extended_card(self, card: AgentCard, context: ServerCallContext) -> AgentCard:
        base = context.state.get(BASE_URL_STATE) or "http://127.0.0.1"
        with self.gateway.acting_as(identity_in(context, self.gateway.caller())):
            return self.card(str(base), extended=True)

    async def _public_card(self, request: Request) -> Response:
        return JSONResponse(agent_card_to_dict(self.card(self.base_url(request))))

    def bindings(self) -> ASGIApp:
        """The JSON-RPC and HTTP+JSON bindings, with body limits, behind the operations layer's authentication."""
        builder = CallerContextBuilder(self.gateway, self.base_url)
        routes = [
            *create_jsonrpc_routes(self.handler, rpc_url=self.path, context_builder=builder),
            *create_rest_routes(self.handler, context_builder=builder, path_prefix=self.path),
        ]
        limited = BodyLimit(Starlette(routes=routes), self.settings.max_request_bytes, rpc_path=self.path)
        return OpsHttpApp(limited, self.gateway.ops, path=self.path)

    def beside(self, other: ASGIApp) -> ASGIApp:
        """An ASGI app serving A2A (the card and `{path}`...) and everything else (and the lifespan) from `other`."""
        return _Router(Starlette(routes=_card_routes(self._public_card)), self.bindings(), other, self.path)

    async def aclose(self) -> None:
        """Stop the tasks still running (their backend calls are cancelled)."""
        await self.handler.aclose()


def _card_routes(endpoint: Callable[[Request], Awaitable[Response]]) -> list[Route]:
    return [Route(path, endpoint, methods=["GET"]) for path in CARD_PATHS]


class _Router:
    def __init__(self, card: ASGIApp, bindings: ASGIApp, other: ASGIApp, path: str) -> None:
        self._card, self._bindings, self._other, self._path = card, bindings, other, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = scope["path"]
            if route in CARD_PATHS:
                await self._card(scope, receive, send)
                return
            if under(route, self._path):
                await self._bindings(scope, receive, send)
                return
        await self._other(scope, receive, send)


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413 and the limit (in the JSON-RPC error shape at the
    JSON-RPC endpoint, the REST one elsewhere), before any parser reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, rpc_path: str) -> None:
        self._app = app
        self._max = max_bytes
        self._rpc_path = rpc_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._refuse(scope, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                await self._refuse(scope, send, size, at_least=True)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # (then only the disconnect)

        await self._app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, size: int, *, at_least: bool = False) -> None:
        message = (
            f"The request body is {'over ' if at_least else ''}{size} bytes; this agent takes at most {self._max} "
            "bytes per request (server.a2a.max_request_bytes). Send less data in one message: split it, or pass a "
            "reference the tool can read."
        )
        if scope["path"] == self._rpc_path:
            payload: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
        else:
            payload = {"error": {"code": 413, "status": "INVALID_ARGUMENT", "message": message}}
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
