"""The lean channel's transport for streamable-HTTP upstreams: each message one POST on the SDK's session.

The SDK's client transport and session spend over a millisecond of CPU on every call; here a call is one
POST with the session id and protocol version the SDK's transport negotiated (read off its requests),
and the answer, plain JSON or an SSE stream, goes back through the channel. Whatever else arrives on
that stream (a sampling or elicitation request, a notification) is handed to the SDK's session as if
its own transport had read it, so it is answered the usual way. A stream the server closes before the
answer (SEP-1699 polling) is resumed with `Last-Event-ID`. Plain `http://` upstreams get these requests
through a lean keep-alive client of their own (`_http11`); anything else goes through httpx2.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio
import httpx2
import mcp_types
from mcp.shared.exceptions import MCPError

from aperture.execution.backends._http import SessionHeaders
from aperture.execution.backends._http11 import pool_for
from aperture.execution.backends._lines import MAX_MESSAGE_BYTES, LineTooLongError, text_lines
from aperture.execution.backends.mcp_depth import loads_upstream
from aperture.execution.backends.mcp_raw import RawChannel

logger = logging.getLogger(__name__)

MAX_RESUMES = 5
MAX_ERROR_BODY = 2000


class _Response(Protocol):
    """What is read of an answer: httpx2's `Response`, or `_http11.Response`."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


class HttpPoster:
    """`send` for a `RawChannel` over streamable HTTP; `elsewhere` takes the messages that are not its own.

    `elsewhere(message, context)` gets the channel `context` of the request whose stream carried the message
    (None when that request no longer waits), so a request the server sends back can be put to its caller.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        url: str,
        session: SessionHeaders,
        channel: RawChannel,
        elsewhere: Callable[[Any, Any], Awaitable[None]],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._http = http
        self.max_message_bytes = max_message_bytes
        self._url = url
        self._session = session
        self._channel = channel
        self._elsewhere = elsewhere
        self._fast = pool_for(http, url)

    async def aclose(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()

    def _stream(
        self, method: str, headers: dict[str, str], body: bytes = b""
    ) -> AbstractAsyncContextManager[_Response]:
        fast = self._fast
        if fast is not None and fast.usable:
            return fast.stream(method, headers, body)
        return self._http.stream(method, self._url, content=body or None, headers=headers)

    async def send(self, line: bytes, stream_of: str | None) -> None:
        headers = self._session.apply(
            {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        )
        async with self._stream("POST", headers, line) as response:
            if session_id := response.headers.get("mcp-session-id"):
                self._session.session_id = session_id  # as the SDK's transport would record it
            if response.status_code == 202:
                return  # a notification, accepted
            if response.status_code >= 400:
                raise _http_error(response.status_code, await _read_head(response, MAX_ERROR_BODY))
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("application/json"):
                await self._deliver(loads_upstream(await self._read_all(response), stream_of), stream_of)
                return
            last_event = await self._read_events(response, stream_of)
        await self._resume(stream_of, last_event)

    async def _resume(self, request_id: str | None, last_event: _LastEvent) -> None:
        """Follow a stream the server closed before answering: GET with Last-Event-ID until the answer came."""
        for _ in range(MAX_RESUMES):
            if not self._channel.waits_for(request_id) or last_event.id is None:
                return
            await anyio.sleep(last_event.retry_ms / 1000)
            headers = self._session.apply({"accept": "text/event-stream", "last-event-id": last_event.id})
            async with self._stream("GET", headers) as response:
                if response.status_code >= 400:
                    raise _http_error(response.status_code, await _read_head(response, MAX_ERROR_BODY))
                last_event = await self._read_events(response, request_id, last_event)

    async def _read_events(
        self, response: _Response, stream_of: str | None, last: _LastEvent | None = None
    ) -> _LastEvent:
        last = last or _LastEvent()
        limit = self.max_message_bytes
        try:
            async for event in _sse_events(text_lines(response.aiter_bytes(), limit), limit):
                last.id = event.get("id", last.id)
                if "retry" in event and event["retry"].isdigit():
                    last.retry_ms = int(event["retry"])
                data = event.get("data")
                if data:
                    await self._deliver(loads_upstream(data, stream_of), stream_of)
        except LineTooLongError:
            raise _too_large(limit) from None
        return last

    async def _read_all(self, response: _Response) -> bytes:
        """The whole body, refused as soon as it passes `max_message_bytes` (never held beyond that)."""
        parts: list[bytes] = []
        size = 0
        async for part in response.aiter_bytes():
            size += len(part)
            if size > self.max_message_bytes:
                raise _too_large(self.max_message_bytes)
            parts.append(part)
        return b"".join(parts)

    async def _deliver(self, message: Any, stream_of: str | None) -> None:
        if not self._channel.accept(message, stream_of):
            await self._elsewhere(message, self._channel.context_of(stream_of))


class _LastEvent:
    def __init__(self) -> None:
        self.id: str | None = None
        self.retry_ms = 100


async def _sse_events(lines: AsyncIterator[str], limit: int = sys.maxsize) -> AsyncIterator[dict[str, str]]:
    """Server-sent events as field dicts; several `data` lines join with newlines (once, at the event's end).

    Raises:
        LineTooLongError: an event's data passed `limit` characters.
    """
    event: dict[str, str] = {}
    data: io.StringIO | None = None  # grows in place: no list of many small strings, no copy per line
    async for line in lines:
        if not line:
            if data is not None:
                event["data"] = data.getvalue()
            if event:
                yield event
            event, data = {}, None
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field != "data":
            event[field] = value
            continue
        if data is None:
            data = io.StringIO()
        else:
            data.write("\n")
        data.write(value)
        if data.tell() > limit:
            raise LineTooLongError(f"an event longer than {limit} bytes")
    if data is not None:
        event["data"] = data.getvalue()
    if event:
        yield event


async def _read_head(response: _Response, limit: int) -> str:
    """At most `limit` bytes of the body, as text (for an error message: the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        parts.append(part)
        size += len(part)
        if size >= limit:
            break
    return b"".join(parts)[:limit].decode("utf-8", "replace")


def _too_large(limit: int) -> MCPError:
    return MCPError(
        code=mcp_types.INTERNAL_ERROR,
        message=f"The upstream's answer is larger than {limit} bytes, the most this backend takes "
        "(max_message_bytes in its configuration). Ask for less at a time (a narrower query, a page, a "
        "smaller range), or have the operator raise the limit.",
    )


def _http_error(status: int, body: str) -> MCPError:
    # Worded like the SDK's errors, so a lost session (404) is recognised and re-initialised the same way.
    if status == 404:
        return MCPError(code=mcp_types.INVALID_REQUEST, message=f"Session not found (HTTP 404): {body[:200]}")
    return MCPError(code=mcp_types.INTERNAL_ERROR, message=f"HTTP {status} from the upstream: {body[:500]}")
