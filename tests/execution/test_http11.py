"""The lean HTTP/1.1 client for plain `http://` upstreams, against a real server on 127.0.0.1.

The server is scripted per test: it reads each request (head and Content-Length body) and answers
with whatever bytes the test gives it, so keep-alive, a connection closed while idle, chunked SSE
and a never-ending answer are all exercised on real sockets.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx2
import pytest

from aperture.execution.backends import _http11
from aperture.execution.backends._http import SessionHeaders, upstream_http_client
from aperture.execution.backends._http11 import Http11Pool, pool_for

pytestmark = pytest.mark.anyio

Handler = Callable[[int, bytes, anyio.abc.SocketStream], Awaitable[bool]]
"""Answers request number n (counted over the server's life) given its bytes; False closes the connection."""


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += await stream.receive()
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.requests.append(request)
                if not await self.handler(len(self.requests), request, stream):
                    return


@asynccontextmanager
async def running(handler: Handler) -> AsyncIterator[tuple[Server, Http11Pool]]:
    server = Server(handler)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, server.serve)
        http = upstream_http_client({"authorization": "Bearer secret"}, SessionHeaders())
        pool = pool_for(http, f"http://127.0.0.1:{port}/mcp")
        assert pool is not None
        try:
            yield server, pool
        finally:
            await pool.aclose()
            await http.aclose()
            tg.cancel_scope.cancel()


def json_answer(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def echo_json(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
    await stream.send(json_answer(b'{"n": %d}' % n))
    return True


async def test_connections_are_kept_alive_and_requests_carry_the_headers() -> None:
    async with running(echo_json) as (server, pool):
        for n in (1, 2, 3):
            async with pool.stream("POST", {"mcp-session-id": "s-1", "content-type": "application/json"}, b"{}") as r:
                assert r.status_code == 200
                assert r.headers["content-type"] == "application/json"
                assert await r.aread() == b'{"n": %d}' % n
    assert server.connections == 1
    head = server.requests[0].lower()
    assert head.startswith(b"post /mcp http/1.1\r\n")
    for header in (b"host: 127.0.0.1:", b"authorization: bearer secret", b"mcp-session-id: s-1", b"content-length: 2"):
        assert header in head
    assert server.requests[0].endswith(b"\r\n\r\n{}")


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_the_request_sent_again() -> None:
    async def answer_then_close(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        await stream.send(json_answer(b'{"n": %d}' % n))
        return False  # the server ends every connection after one answer (as after its keep-alive timeout)

    async with running(answer_then_close) as (server, pool):
        for n in (1, 2):
            async with pool.stream("POST", {}, b"{}") as response:
                assert await response.aread() == b'{"n": %d}' % n
            await anyio.sleep(0.05)  # the close reaches the client while the connection is idle
    assert server.connections == 2
    assert len(server.requests) == 2  # the first try on the dead connection never reached a server


async def test_no_second_try_when_a_fresh_connection_closes_without_an_answer() -> None:
    async def hang_up(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        return False

    async with running(hang_up) as (server, pool):
        with pytest.raises(httpx2.RemoteProtocolError):
            async with pool.stream("POST", {}, b"{}"):
                pass
    assert len(server.requests) == 1


async def test_chunked_sse_arrives_event_by_event() -> None:
    first_seen = anyio.Event()

    async def sse(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        def chunk(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        await stream.send(head + chunk(b'id: 1\r\ndata: {"progress": 1}\r\n\r\n'))
        with anyio.fail_after(5):
            await first_seen.wait()  # the next event goes out only once the client has read this one
        await stream.send(chunk(b'data: {"result":') + chunk(b' "done"}\n\n') + b"0\r\n\r\n")
        return True

    async with running(sse) as (server, pool):
        lines: list[str] = []
        async with pool.stream("POST", {}, b"{}") as response:
            assert response.headers["content-type"] == "text/event-stream"
            async for line in response.aiter_lines():
                lines.append(line)
                if line == "":
                    first_seen.set()
        assert lines == ["id: 1", 'data: {"progress": 1}', "", 'data: {"result": "done"}', ""]
        async with pool.stream("POST", {}, b"{}") as response:  # the connection was left clean: reused
            await response.aread()
    assert server.connections == 1


async def test_a_cancelled_slow_answer_discards_its_connection() -> None:
    async def slow_once(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        if n == 1:
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{")
            await anyio.sleep(10)
        await stream.send(json_answer(b"{}"))
        return True

    async with running(slow_once) as (server, pool):
        with anyio.move_on_after(0.2) as scope:
            async with pool.stream("POST", {}, b"{}") as response:
                await response.aread()
        assert scope.cancelled_caught
        assert pool._open == 0 and not pool._idle  # never reused half-read
        async with pool.stream("POST", {}, b"{}") as response:
            assert await response.aread() == b"{}"
    assert server.connections == 2


async def test_no_answer_within_the_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http11, "READ_TIMEOUT", 0.2)

    async def silent(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        await anyio.sleep(10)
        return True

    async with running(silent) as (_, pool):
        with pytest.raises(httpx2.ReadTimeout):
            async with pool.stream("POST", {}, b"{}"):
                pass
        assert pool._open == 0


async def test_an_answer_ending_with_the_connection_and_an_unread_202() -> None:
    async def answers(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        if n == 1:
            await stream.send(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            return True
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}")
        return False

    async with running(answers) as (server, pool):
        async with pool.stream("POST", {}, b"{}") as response:
            assert response.status_code == 202
        assert len(pool._idle) == 1
        async with pool.stream("POST", {}, b"{}") as response:
            assert await response.aread() == b"{}"
        assert pool._open == 0
    assert server.connections == 1


async def test_only_plain_requests_take_the_lean_client() -> None:
    http = upstream_http_client({})
    assert pool_for(http, "https://example.com/mcp") is None
    assert pool_for(http, "http://user:pw@127.0.0.1:1/mcp") is None
    assert pool_for(upstream_http_client({"x-bad": "a\r\nb: c"}), "http://127.0.0.1:1/mcp") is None
    async with httpx2.AsyncClient(proxy="http://127.0.0.1:3128") as proxied:
        assert pool_for(proxied, "http://10.1.2.3/mcp") is None
    async with httpx2.AsyncClient(follow_redirects=True) as redirecting:
        assert pool_for(redirecting, "http://10.1.2.3/mcp") is None
    pool = pool_for(http, "http://127.0.0.1:1/mcp")
    assert pool is not None
    http.cookies.set("sticky", "1")
    assert not pool.usable  # httpx2 sends cookies; the lean client does not


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


async def test_compressed_answers_are_decoded_though_identity_was_asked_for() -> None:
    events = b'data: {"progress": 1}\n\ndata: {"result": "done"}\n\n'
    deflate = zlib.compressobj(wbits=zlib.MAX_WBITS)
    deflated = deflate.compress(events) + deflate.flush()

    async def compressing(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        if n == 1:
            body = gzip.compress(b'{"n": 1}')
            head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            await stream.send(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        else:  # a deflated SSE stream, cut at awkward places
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: deflate\r\n"
            await stream.send(head + b"transfer-encoding: chunked\r\n\r\n" + chunked(deflated[:7], deflated[7:]))
        return True

    async with running(compressing) as (_, pool):
        assert b"accept-encoding: identity" in pool.stream("POST", {}, b"{}")._request.lower()
        async with pool.stream("POST", {}, b"{}") as response:
            assert await response.aread() == b'{"n": 1}'
        async with pool.stream("POST", {}, b"{}") as response:
            lines = [line async for line in response.aiter_lines()]
        assert lines == ['data: {"progress": 1}', "", 'data: {"result": "done"}', ""]


async def test_an_unsupported_or_corrupt_encoding_is_a_clear_error() -> None:
    async def odd(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        coding, body = (b"br", b"\x1b\x00") if n == 1 else (b"gzip", b"not gzip at all")
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: %s\r\ncontent-length: %d"
        await stream.send(head % (coding, len(body)) + b"\r\n\r\n" + body)
        return True

    async with running(odd) as (_, pool):
        with pytest.raises(httpx2.DecodingError, match="'br', which is not supported"):
            async with pool.stream("POST", {}, b"{}"):
                pass
        with pytest.raises(httpx2.DecodingError, match="compressed answer is corrupt"):
            async with pool.stream("POST", {}, b"{}") as response:
                await response.aread()


async def test_sse_lines_may_end_with_a_lone_carriage_return() -> None:
    async def cr_only(n: int, request: bytes, stream: anyio.abc.SocketStream) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        # CR alone, LF alone, and a CRLF split between two chunks (one line end, not two).
        parts = (b"id: 1\rdata: a\r\r", b"data: b\n\ndata: c\r", b"\n\r", b"\n")
        await stream.send(head + chunked(*parts))
        return True

    async with running(cr_only) as (_, pool), pool.stream("POST", {}, b"{}") as response:
        lines = [line async for line in response.aiter_lines()]
    assert lines == ["id: 1", "data: a", "", "data: b", "", "data: c", ""]
