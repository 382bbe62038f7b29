"""The lean channel over streamable HTTP reads answers in linear time and refuses one that passes the
backend's max_message_bytes as it arrives: a JSON body, an SSE line without an end, an SSE event of
endless data lines. Against a real server on 127.0.0.1, through both the lean HTTP/1.1 client and httpx2."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from aperture.execution.backends._http import SessionHeaders, upstream_http_client
from aperture.execution.backends.mcp_http_raw import HttpPoster, _sse_events
from aperture.execution.backends.mcp_raw import RawChannel
from tests.execution.test_http11 import Handler, Server
from tests.execution.test_mcp_stdio import MIB, peak_memory

pytestmark = pytest.mark.anyio

CAP = 1 * MIB
CHUNK = b"x" * 65536


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def endless(content_type: str, opening: bytes, filler: bytes) -> Handler:
    """An answer that never ends: `opening`, then `filler` over and over until the client hangs up."""

    async def handler(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
        try:
            await stream.send(head.encode() + chunked(opening))
            for _ in range(10_000):  # bounded: 640 MiB at most, far past any cap here
                await stream.send(chunked(filler))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        return False

    return handler


async def answer_ok(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
    request_id = json.loads(request.partition(b"\r\n\r\n")[2])["id"]
    message = {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": "ok"}]}}
    body = b"event: message\r\ndata: " + json.dumps(message).encode() + b"\r\n\r\n"
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    await stream.send(head.encode() + chunked(body) + b"0\r\n\r\n")
    return True


@asynccontextmanager
async def channel_to(handler: Handler, client: str) -> AsyncIterator[RawChannel]:
    server = Server(handler)
    elsewhere: list[Any] = []

    async def collect(message: Any, context: Any) -> None:
        elsewhere.append(message)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        url = f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}/mcp"
        tg.start_soon(listener.serve, server.serve)
        session = SessionHeaders()
        # Following redirects keeps a client off the lean HTTP/1.1 path: httpx2 does the requests then.
        http = upstream_http_client({}, session) if client == "http11" else httpx2.AsyncClient(follow_redirects=True)
        poster = HttpPoster(http, url, session, RawChannel(), collect, max_message_bytes=CAP)
        assert (poster._fast is not None) is (client == "http11")
        channel = poster._channel
        channel.open(poster.send, tg)
        try:
            yield channel
        finally:
            await poster.aclose()
            await http.aclose()
            tg.cancel_scope.cancel()
    assert elsewhere == []


OVERSIZED = {
    "json-body": endless("application/json", b'{"jsonrpc":"2.0","id":"ap-1","result":{"x":"', CHUNK),
    "sse-line-without-end": endless("text/event-stream", b'data: {"jsonrpc":"2.0","id":"ap-1","result":"', CHUNK),
    "sse-event-of-endless-data-lines": endless(
        "text/event-stream", b"event: message\n", (b"data: " + b"x" * 1000 + b"\n") * 64
    ),
}


@pytest.mark.parametrize("client", ["http11", "httpx2"])
@pytest.mark.parametrize("answer", list(OVERSIZED), ids=list(OVERSIZED))
async def test_an_answer_past_the_cap_is_refused_as_it_arrives_with_the_key_named(answer: str, client: str) -> None:
    with anyio.fail_after(30), peak_memory() as peak:
        async with channel_to(OVERSIZED[answer], client) as channel:
            with pytest.raises(MCPError) as caught:
                await channel.request("tools/call", {"name": "big"})
    assert "larger than 1048576 bytes" in caught.value.error.message
    assert "max_message_bytes" in caught.value.error.message
    assert peak.bytes < 4 * CAP  # the cap and some change, not the 640 MiB the server would send


@pytest.mark.parametrize("client", ["http11", "httpx2"])
async def test_an_answer_within_the_cap_still_arrives(client: str) -> None:
    with anyio.fail_after(10):
        async with channel_to(answer_ok, client) as channel:
            assert await channel.request("tools/call", {"name": "small"}) == {
                "content": [{"type": "text", "text": "ok"}]
            }


async def test_many_data_lines_of_one_event_are_joined_once() -> None:
    lines = ["data: a", "data: b", "id: 7", "data: c", "", ": keep-alive", "data: d", ""]

    async def source() -> AsyncIterator[str]:
        for line in lines:
            yield line

    assert [event async for event in _sse_events(source())] == [{"data": "a\nb\nc", "id": "7"}, {"data": "d"}]


def answer_deep(content_type: str) -> Handler:
    """The first call is answered nested 1,000 levels deep; later ones as `answer_ok` does."""

    async def handler(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        if n > 1:  # (requests are counted from 1)
            return await answer_ok(n, request, stream)
        request_id = json.loads(request.partition(b"\r\n\r\n")[2])["id"]
        deep = b"[" * 1000 + b"]" * 1000
        message = b'{"jsonrpc":"2.0","id":%s,"result":{"content":[],"structuredContent":{"v":%s}}}' % (
            json.dumps(request_id).encode(),
            deep,
        )
        body = message if content_type == "application/json" else b"event: message\r\ndata: " + message + b"\r\n\r\n"
        head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
        await stream.send(head.encode() + chunked(body) + b"0\r\n\r\n")
        return True

    return handler


@pytest.mark.parametrize("client", ["http11", "httpx2"])
@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream"], ids=["json-body", "sse"])
async def test_an_answer_nested_too_deep_fails_its_call_and_the_channel_goes_on(content_type: str, client: str) -> None:
    with anyio.fail_after(10):
        async with channel_to(answer_deep(content_type), client) as channel:
            with pytest.raises(MCPError) as caught:
                await channel.request("tools/call", {"name": "deep"})
            assert "more than 64 levels deep" in caught.value.error.message
            assert await channel.request("tools/call", {"name": "small"}) == {
                "content": [{"type": "text", "text": "ok"}]
            }
