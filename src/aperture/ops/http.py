"""The HTTP side of the operations layer, as an ASGI layer in front of the MCP app: `/healthz`, `/readyz` and
`/metrics` (in full only for an admin credential when `ops.health.detail` is public), the OAuth
protected-resource document, and authentication of every other request (401 with `WWW-Authenticate` when it
fails) before any MCP handling, so both the SDK's and the lean call path see it. Refused requests and session
deletions are recorded in the audit log."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.model import UnauthorizedError
from aperture.ops.chain import Ops
from aperture.ops.identity import IDENTITY_KEY, Identity, current_identity

WELL_KNOWN = "/.well-known/oauth-protected-resource"


class OpsHttpApp:
    """Wraps the MCP ASGI app; see the module docstring."""

    def __init__(self, app: ASGIApp, ops: Ops, *, path: str = "/mcp") -> None:
        self._app = app
        self._ops = ops
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = scope["path"]
        if scope["method"] == "GET":
            if route == "/healthz":
                await _json(send, 200, self._ops.health.liveness())
                return
            if route == "/readyz":
                body = await self._ops.health.readiness()
                status = 200 if body["status"] == "ready" else 503
                await _json(send, status, body if await self._full_view(scope) else {"status": body["status"]})
                return
            if route == "/metrics" and self._ops.telemetry is not None:
                text = self._ops.telemetry.prometheus_text(public=not await self._full_view(scope))
                await _respond(send, 200, text, "text/plain; version=0.0.4; charset=utf-8")
                return
            if route.startswith(WELL_KNOWN) and self._ops.auth is not None:
                await _json(send, 200, self._resource_document(scope))
                return
        auth = self._ops.auth
        if auth is None:
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        try:
            identity = await auth.authenticator.authenticate(headers.get("authorization"), headers.get("x-api-key"))
        except UnauthorizedError as error:
            challenge = f'Bearer resource_metadata="{self._resource_url(scope)}{WELL_KNOWN}{self._mcp_path(route)}"'
            if "expired" in error.message or "not valid" in error.message or "signature" in error.message:
                challenge += ', error="invalid_token"'
            body = {"error": "unauthorized", "message": error.message}
            await _json(send, 401, body, [(b"www-authenticate", challenge.encode())])
            if self._ops.telemetry is not None:
                self._ops.telemetry.unauthorized.add(1)
            self._record("unauthorized", None, route, "unauthorized", scope, reason=error.message[:200])
            return
        scope[IDENTITY_KEY] = identity
        token = current_identity.set(identity)
        try:
            if scope["method"] == "DELETE" and self._mcp_path(route) == route and self._ops.audit is not None:
                await self._delete_session(scope, receive, send, identity)
            else:
                await self._app(scope, receive, send)
        finally:
            current_identity.reset(token)

    def _mcp_path(self, route: str) -> str:
        """The MCP endpoint a request is for: `route` itself when it is the endpoint or a toolset's virtual
        server under it (`/mcp/readonly`), else the endpoint."""
        return route if route == self._path or route.startswith(self._path + "/") else self._path

    async def _full_view(self, scope: Scope) -> bool:
        """Whether this /readyz or /metrics request gets the full view: `ops.health.detail` is full (by default
        it is when auth is off), or the request carries the credential of a caller with one of `full_roles`.
        Without (valid) credentials the answer is the public view, never a 401: probes send none."""
        settings = self._ops.settings
        detail = settings.health.detail or ("public" if settings.auth.enabled else "full")
        auth = self._ops.auth
        if detail == "full":
            return True
        if auth is None:
            return False
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if "authorization" not in headers and "x-api-key" not in headers:
            return False
        try:
            who: Identity = await auth.authenticator.authenticate(
                headers.get("authorization"), headers.get("x-api-key")
            )
        except UnauthorizedError as error:
            self._record("unauthorized", None, scope["path"], "unauthorized", scope, reason=error.message[:200])
            return False
        return who.allows(settings.health.full_roles, [])

    async def _delete_session(self, scope: Scope, receive: Receive, send: Send, identity: Identity) -> None:
        """A DELETE (a client ending its MCP session), recorded in the audit log with the answer's status."""
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            session = dict(scope.get("headers", ())).get(b"mcp-session-id", b"")
            # The session id lets its holder act in the session: the log keeps a digest, enough to correlate.
            target = f"session {hashlib.sha256(session).hexdigest()[:16]}" if session else "no session id"
            outcome = "ok" if 200 <= status < 300 else f"http {status}" if status else "cancelled"
            self._record("session_delete", identity, target, outcome, scope)

    def _record(self, event: str, who: Identity | None, target: str, outcome: str, scope: Scope, **fields: Any) -> None:
        audit = self._ops.audit
        if audit is not None:
            client = scope.get("client")
            peer = f"{client[0]}:{client[1]}" if client else ""
            audit.record(event, who, target, outcome, http_method=scope["method"], client=peer, **fields)

    def _resource_url(self, scope: Scope) -> str:
        configured = self._ops.settings.auth.resource
        if configured:
            return configured.rstrip("/").removesuffix(self._path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("127.0.0.1", 80))
        return f"{scope.get('scheme', 'http')}://{host}"

    def _resource_document(self, scope: Scope) -> dict[str, Any]:
        settings = self._ops.settings.auth
        servers = list(settings.authorization_servers)
        if not servers and settings.jwt is not None and settings.jwt.issuer:
            servers = [settings.jwt.issuer]
        # The document of a toolset's virtual server (`.../oauth-protected-resource/mcp/readonly`) names it.
        endpoint = self._mcp_path(scope["path"].removeprefix(WELL_KNOWN))
        toolset = endpoint.removeprefix(self._path)
        return {
            "resource": settings.resource.rstrip("/") + toolset
            if settings.resource
            else f"{self._resource_url(scope)}{endpoint}",
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
        }


async def _json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _respond(send, status, json.dumps(body).encode(), "application/json", headers)


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
