"""The lean `tools/call` path on streamable HTTP: POSTs on known sessions answered beside the SDK.

An ASGI layer in front of the SDK's app. A POST carrying one `tools/call` on a live handshake-era
session the surface already knows is answered here, as the SDK would answer it: an SSE stream with
the call's progress and log messages and then its response, primed with an event id and stored for
resumption from 2025-11-25 on. Everything else (and anything doubtful: other methods, batches, bad
headers, a body over the limit) passes to the SDK unchanged, body included. A `notifications/cancelled`
naming a call running here cancels it, which is then answered with the SDK's "request cancelled" error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import mcp_types
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecurityMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.surface.mcp.server import McpSurface

logger = logging.getLogger(__name__)

REQUEST_CANCELLED = -32800  # what the SDK answers a cancelled request with on the 2025 wire
_PRIMED_FROM = "2025-11-25"  # older clients cannot read the empty priming event


class LeanHttpApp:
    """Wraps the SDK's streamable-HTTP app; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        surface: McpSurface,
        manager: StreamableHTTPSessionManager,
        *,
        path: str,
        retry_ms: int,
    ) -> None:
        self._app = app
        self._surface = surface
        self._manager = manager
        self._path = path
        self._retry_ms = retry_ms
        self._security = TransportSecurityMiddleware(manager.security_settings)
        self._running: dict[tuple[str, str], anyio.CancelScope] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self._path:
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        session_id = request.headers.get("mcp-session-id")
        version = request.headers.get("mcp-protocol-version")
        accept = request.headers.get("accept", "")
        transport = self._live_session(session_id)
        if (
            transport is None
            or version is None
            or "text/event-stream" not in accept
            or "application/json" not in accept
            or await self._security.validate_request(request, is_post=True) is not None
        ):
            await self._app(scope, receive, send)
            return
        body, complete = await _read_body(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
        if complete and await self._take(transport, session_id or "", version, body, send):
            return
        await self._app(scope, _replay(body, complete, receive), send)

    def _live_session(self, session_id: str | None) -> Any:
        """The SDK's transport for a session that is open, or None (unknown ones are the SDK's to refuse)."""
        if not session_id:
            return None
        sessions = getattr(self._manager, "_server_instances", None)
        transport = sessions.get(session_id) if isinstance(sessions, dict) else None
        if transport is None or getattr(transport, "is_terminated", True):
            return None
        return transport

    async def _take(self, transport: Any, session_id: str, version: str, body: bytes, send: Send) -> bool:
        try:
            message = json.loads(body)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return False
        method, params, request_id = message.get("method"), message.get("params"), message.get("id")
        if method == "notifications/cancelled" and isinstance(params, dict):
            scope = self._running.get((session_id, str(params.get("requestId"))))
            if scope is None:
                return False
            scope.cancel()
            await _respond(send, 202, b"", [])
            return True
        if method != "tools/call" or not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return False
        key = (session_id, str(request_id))
        if key in self._running:
            return False  # a duplicate id: the SDK's to answer
        store = getattr(transport, "_event_store", None)
        priming = store is not None and version >= _PRIMED_FROM
        stream = _EventStream(send, session_id, str(request_id), store, priming, self._retry_ms)
        work = self._surface.lean_http_call(session_id, version, params, stream.notify)
        if work is None:
            return False
        scope = self._running[key] = anyio.CancelScope()
        try:
            result: dict[str, Any] | None = None
            with scope:
                result = await work
            if result is None:  # cancelled by the client
                error = {"code": REQUEST_CANCELLED, "message": "Request cancelled"}
                await stream.emit({"jsonrpc": "2.0", "id": request_id, "error": error})
            else:
                await stream.emit({"jsonrpc": "2.0", "id": request_id, "result": result})
            await stream.end()
        finally:
            self._running.pop(key, None)
        return True


class _EventStream:
    """One POST's SSE response, started with the first event; events are stored (as the SDK does) when the
    session has a store, and the stream is primed for the clients that can read a priming event."""

    def __init__(self, send: Send, session_id: str, stream_id: str, store: Any, priming: bool, retry_ms: int) -> None:
        self._send = send
        self._session_id = session_id
        self._stream_id = stream_id
        self._store = store
        self._priming = priming
        self._retry_ms = retry_ms
        self._started = False

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.emit({"jsonrpc": "2.0", "method": method, "params": params})

    async def emit(self, message: dict[str, Any]) -> None:
        chunk = b""
        if not self._started:
            self._started = True
            headers = [
                (b"cache-control", b"no-cache, no-transform"),
                (b"connection", b"keep-alive"),
                (b"content-type", b"text/event-stream"),
                (b"mcp-session-id", self._session_id.encode()),
                (b"x-accel-buffering", b"no"),
            ]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
            if self._priming:
                priming = await self._store.store_event(self._stream_id, None)
                chunk = f"id: {priming}\r\ndata: \r\nretry: {self._retry_ms}\r\n\r\n".encode()
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        if self._store is not None:
            stored = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
            event_id = await self._store.store_event(self._stream_id, stored)
            chunk += f"id: {event_id}\r\nevent: message\r\ndata: {data}\r\n\r\n".encode()
        else:
            chunk += f"event: message\r\ndata: {data}\r\n\r\n".encode()
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, and whether all of it was read (False past `limit` or on a disconnect)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), False
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts), False
        if not message.get("more_body", False):
            return b"".join(parts), True


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A `receive` that first hands back the body already read, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replayed


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
