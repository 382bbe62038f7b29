"""The lean `tools/call` path on streamable HTTP: tool calls answered beside the SDK.

An ASGI layer in front of the SDK's app. It answers, as the SDK would:
- a POST with one `tools/call` on a live handshake-era session the surface already knows: an SSE
  stream with the call's progress and log messages, then its response; events stored for resumption,
  and the stream primed for sessions from 2025-11-25 on. A `notifications/cancelled` naming such a call cancels it
  (answered with the SDK's "request cancelled" error).
- a 2026-07-28 `tools/call` (no session; the method and tool named in headers): plain JSON, or an SSE
  stream once progress has to be sent first.
Everything else (and anything doubtful: other methods, batches, bad headers, a body over the limit)
passes to the SDK unchanged, body included. A client that hangs up cancels its call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Coroutine
from typing import Any

import anyio
import mcp_types
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecurityMiddleware
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aperture.surface.mcp.server import McpSurface
from aperture.surface.mcp.sessions import PRIMED_FROM, session_version

logger = logging.getLogger(__name__)

REQUEST_CANCELLED = -32800  # what the SDK answers a cancelled request with on the 2025 wire


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
        headers = request.headers
        version = headers.get("mcp-protocol-version") or ""
        session_id = headers.get("mcp-session-id") or ""
        modern = version in MODERN_PROTOCOL_VERSIONS
        # A handshake-era call needs a live session; a 2026-07-28 one names its method in a header.
        transport = None if modern else self._live_session(session_id)
        eligible = headers.get("mcp-method") == "tools/call" if modern else transport is not None
        if (
            not eligible
            or "application/json" not in headers.get("accept", "")
            or (not modern and "text/event-stream" not in headers.get("accept", ""))
            or await self._security.validate_request(request, is_post=True) is not None
        ):
            await self._app(scope, receive, send)
            return
        body, complete = await _read_body(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
        message = _json_rpc(body) if complete else None
        if message is not None:
            if modern:
                taken = await self._take_modern(message, version, headers.get("mcp-name"), receive, send)
            else:
                taken = await self._take_handshake(message, transport, session_id, version, receive, send)
            if taken:
                return
        await self._app(scope, _replay(body, complete, receive), send)

    def _live_session(self, session_id: str) -> Any:
        """The SDK's transport for a session that is open, or None (unknown ones are the SDK's to refuse)."""
        if not session_id:
            return None
        sessions = getattr(self._manager, "_server_instances", None)
        transport = sessions.get(session_id) if isinstance(sessions, dict) else None
        if transport is None or getattr(transport, "is_terminated", True):
            return None
        return transport

    async def _take_handshake(
        self, message: dict[str, Any], transport: Any, session_id: str, version: str, receive: Receive, send: Send
    ) -> bool:
        method, params, request_id = message.get("method"), message.get("params"), message.get("id")
        if method == "notifications/cancelled" and isinstance(params, dict):
            scope = self._running.get((session_id, str(params.get("requestId"))))
            if scope is None:
                return False
            scope.cancel()
            await _respond(send, 202, b"", [])
            return True
        if method != "tools/call" or not _valid_id(request_id) or (session_id, str(request_id)) in self._running:
            return False  # (a duplicate id is the SDK's to answer)
        store = getattr(transport, "_event_store", None)
        priming = store is not None and session_version(transport, version) >= PRIMED_FROM
        stream = _EventStream(send, session_id, str(request_id), store, priming, self._retry_ms)
        work = self._surface.lean_http_call(session_id, version, params, stream.notify)
        if work is None:
            return False
        await self._run((session_id, str(request_id)), request_id, work, stream, receive)
        return True

    async def _take_modern(
        self, message: dict[str, Any], version: str, name: str | None, receive: Receive, send: Send
    ) -> bool:
        params, request_id = message.get("params"), message.get("id")
        if message.get("method") != "tools/call" or not _valid_id(request_id) or not isinstance(params, dict):
            return False
        if name != params.get("name"):
            return False  # the SDK answers the mismatch
        stream = _EventStream(send, "", str(request_id), None, False, self._retry_ms, json_until_notified=True)
        work = self._surface.lean_modern_call(version, params, stream.notify)
        if work is None:
            return False
        await self._run(None, request_id, work, stream, receive)
        return True

    async def _run(
        self,
        key: tuple[str, str] | None,
        request_id: Any,
        work: Coroutine[Any, Any, dict[str, Any]],
        stream: _EventStream,
        receive: Receive,
    ) -> None:
        """Run one call and answer it; a client that hangs up cancels it."""
        scope = anyio.CancelScope()
        if key is not None:
            self._running[key] = scope
        try:
            result: dict[str, Any] | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_on_disconnect, receive, scope)
                with scope:
                    result = await work
                tg.cancel_scope.cancel()
            if result is None:  # cancelled by the client
                error = {"code": REQUEST_CANCELLED, "message": "Request cancelled"}
                await stream.finish({"jsonrpc": "2.0", "id": request_id, "error": error})
            else:
                await stream.finish({"jsonrpc": "2.0", "id": request_id, "result": result})
        finally:
            if key is not None:
                self._running.pop(key, None)


class _EventStream:
    """One POST's SSE response, started with the first event; events are stored (as the SDK does) when the
    session has a store, and the stream is primed for the clients that can read a priming event."""

    def __init__(
        self,
        send: Send,
        session_id: str,
        stream_id: str,
        store: Any,
        priming: bool,
        retry_ms: int,
        *,
        json_until_notified: bool = False,
    ) -> None:
        self._json_until_notified = json_until_notified  # 2026-07-28: plain JSON unless something comes first
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
                *([(b"mcp-session-id", self._session_id.encode())] if self._session_id else []),
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

    async def finish(self, message: dict[str, Any]) -> None:
        """Send the response, which ends the stream (or is the whole body, as plain JSON)."""
        if self._json_until_notified and not self._started:
            self._started = True
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
            headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            await _respond(self._send, 200, body, headers)
            return
        await self.emit(message)
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def _json_rpc(body: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None
    return message if isinstance(message, dict) and message.get("jsonrpc") == "2.0" else None


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


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
