"""What the HTTP side refuses before anything parses it: oversized request heads, and JSON-RPC bodies that
are nested too deep or whose id is no id.

- `BoundedHttpToolsProtocol`: uvicorn's httptools protocol with a bound on the request line and headers
  together. Neither uvicorn nor httptools bounds them (a 16 MB header line was read whole); past the bound
  the answer is 431 and the connection closes, before the rest is buffered.
- `JsonRpcGuard`: an ASGI layer in front of both call paths (the SDK's and the lean one). A POST to the MCP
  endpoint whose body nests deeper than `MAX_JSON_DEPTH` gets 400 with a JSON-RPC error (-32600) before any
  parser recurses into it; one whose id is an object, an array, a boolean, a fraction or null gets 400 with
  -32600 and id null (the SDK would read it as a notification, answer 202 and never answer it).
  Everything else passes on, body included.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import mcp_types
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from aperture.model.nesting import MAX_JSON_DEPTH, json_too_deep, leading_id
from aperture.surface.mcp.http_lean import _read_body, _replay, _respond
from aperture.surface.mcp.wire import TOO_DEEP, id_problem

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
"""Default bound on a request's line and headers together (`server.max_header_bytes`)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 to a request whose line and headers pass `max_head_bytes`.

    A head still incomplete is counted a whole read at a time, so a flood without an end of headers is
    refused within one read of the bound, before httptools buffers the rest; a complete head is counted
    exactly. Use `bounded(limit)` for a class with another bound.
    """

    max_head_bytes: ClassVar[int] = MAX_HEADER_BYTES
    _in_head = False  # between a request's first byte and the end of its headers
    _read = 0  # bytes read while in the head (whole reads)
    _parsed = 0  # bytes of the request line and headers as parsed
    _refused = False

    @classmethod
    def bounded(cls, limit: int) -> type[BoundedHttpToolsProtocol]:
        """This protocol with `limit` as its bound."""
        return type(cls.__name__, (cls,), {"max_head_bytes": limit})

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self._refused:
            self._read += len(data)
            if self._read > self.max_head_bytes:
                self._refuse_head()

    def on_message_begin(self) -> None:
        self._in_head, self._read, self._parsed = True, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        if self._parsed > self.max_head_bytes:
            self._refuse_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse_head(self) -> None:
        logger.info("refused a request whose line and headers pass %d bytes", self.max_head_bytes)
        self._refused, self._in_head = True, False
        message = (
            f"Request header fields too large: the request line and headers together may take at most "
            f"{self.max_head_bytes} bytes. Send smaller headers (a shorter token or cookie).\n"
        ).encode()
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(message)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                message,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


class JsonRpcGuard:
    """Refuses POSTs to the MCP endpoint that no parser should read; see the module docstring."""

    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self._app = app
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self._path:
            await self._app(scope, receive, send)
            return
        body, complete = await _read_body(receive, DEFAULT_MAX_REQUEST_BODY_SIZE)
        if complete:
            refusal = _refusal(body)
            if refusal is not None:
                request_id, message = refusal
                error = {"code": mcp_types.INVALID_REQUEST, "message": message}
                answer = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
                headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", b"application/json")]
                await _respond(send, 400, answer, headers)
                return
        await self._app(scope, _replay(body, complete, receive), send)


def _refusal(body: bytes) -> tuple[Any, str] | None:
    """`(id, message)` for a body to refuse, or None to pass it on (a body that is not JSON is the SDK's)."""
    if json_too_deep(body):
        logger.info("refused a JSON-RPC body nested over %d levels", MAX_JSON_DEPTH)
        return leading_id(body), TOO_DEEP
    if b'"id"' not in body or (body.count(b'"id"') == 1 and leading_id(body) is not None):
        return None  # no id, or one that is certainly valid: no need to parse the body here
    try:
        message = json.loads(body)
    except ValueError:
        return None
    problem = id_problem(message)
    return None if problem is None else (None, problem)
