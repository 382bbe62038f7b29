"""An HTTP client for streamable-HTTP upstreams that keeps connections alive between calls.

The SDK's client closes each call's SSE response as soon as the JSON-RPC response has arrived, a few
bytes before the server ends the stream; an HTTP/1.1 connection closed mid-body cannot go back to the
pool, so every call paid for a new TCP connection. Here the rest of the body is read (briefly and
bounded) before the stream closes, and the connection is reused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio
import httpx2

DRAIN_SECONDS = 0.05
DRAIN_BYTES = 64 * 1024


class _DrainingStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner
        self._parts: AsyncIterator[bytes] | None = None
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._parts = self._inner.__aiter__()
        async for part in self._parts:
            yield part
        self._done = True

    async def aclose(self) -> None:
        # Closed early (the caller has what it wanted): finish the body when it ends at once, so the
        # connection can be reused; a long stream (the GET event stream) is cut after a moment.
        if self._parts is not None and not self._done:
            drained = 0
            with anyio.move_on_after(DRAIN_SECONDS):
                try:
                    async for part in self._parts:
                        drained += len(part)
                        if drained > DRAIN_BYTES:
                            break
                except (httpx2.HTTPError, RuntimeError):
                    pass
        await self._inner.aclose()


@dataclass
class SessionHeaders:
    """The MCP session the SDK's transport negotiated, as seen on the wire: for requests of our own."""

    session_id: str | None = None
    protocol_version: str | None = None

    def apply(self, headers: dict[str, str]) -> dict[str, str]:
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        if self.protocol_version:
            headers["mcp-protocol-version"] = self.protocol_version
        return headers


class _DrainingTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, session: SessionHeaders | None = None) -> None:
        self._inner = inner
        self._session = session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if self._session is not None:
            if version := request.headers.get("mcp-protocol-version"):
                self._session.protocol_version = version
            if session_id := response.headers.get("mcp-session-id"):
                self._session.session_id = session_id
        if isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _DrainingStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def upstream_http_client(headers: Mapping[str, str], session: SessionHeaders | None = None) -> httpx2.AsyncClient:
    """An async client with the MCP transports' timeouts (30 s, reads 300 s) that reuses connections.

    With `session`, the session id and protocol version the SDK's transport uses are recorded there.
    """
    return httpx2.AsyncClient(
        headers=dict(headers),
        timeout=httpx2.Timeout(30.0, read=300.0),
        transport=_DrainingTransport(httpx2.AsyncHTTPTransport(), session),
    )
