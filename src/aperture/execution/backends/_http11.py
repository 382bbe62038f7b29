"""A small HTTP/1.1 keep-alive client for the lean channel's POSTs to plain `http://` upstreams.

httpx2 spends about 0.6 ms of CPU on a forwarded call (auth and redirect layers, the connection
pool's locks and cancel scopes, h11 in Python, the decoders behind `aiter_lines`). This client does
only what those POSTs need: one `send` of head and body on a kept-alive anyio socket stream, the
answer parsed by httptools (uvicorn's C parser: Content-Length, chunked, or until close), the body
handed out as it arrives (so an SSE stream's notifications are delivered at once), and one cancel
scope per exchange for all its timeouts. A request written on a reused connection that the server had
already closed (nothing of an answer came back) is sent once more on a fresh one. A connection goes
back to the pool only when its answer was read to the end; after a timeout, a cancellation or an
error it is closed. `pool_for` says when the client applies at all: anything else (https, proxies,
redirects, auth, cookies) stays with httpx2.
"""

from __future__ import annotations

import sys
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType

import anyio
import anyio.abc
import httptools
import httpx2

from aperture.execution.backends._lines import text_lines

CONNECT_TIMEOUT = 30.0
WRITE_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
"""The MCP transports' timeouts, as `upstream_http_client` sets them for httpx2; the read timeout is
the longest wait for the next bytes of an answer."""
MAX_CONNECTIONS = 100
MAX_IDLE = 20
DRAIN_SECONDS = 0.05
DRAIN_BYTES = 64 * 1024
_SKIP = frozenset({"host", "accept", "accept-encoding", "content-type", "content-length", "transfer-encoding"})


def pool_for(http: httpx2.AsyncClient, url: str) -> Http11Pool | None:
    """A pool for `url` when a request through `http` would be a plain one; None when httpx2 must do it.

    Plain: `http://`, no proxy (from the environment either), no auth, cookies, event hooks or
    redirects to follow, and header values that are safe to write as they are.
    """
    try:
        parsed = httpx2.URL(url)
        if parsed.scheme != "http" or parsed.userinfo or not parsed.host:
            return None
        if http._transport_for_url(parsed) is not http._transport:  # a proxy is mounted for it
            return None
    except (AttributeError, httpx2.InvalidURL):
        return None
    if http.auth is not None or http.follow_redirects or any(http.event_hooks.values()):
        return None
    host = parsed.host
    port = parsed.port or 80
    authority = f"[{host}]" if ":" in host else host
    if parsed.port is not None:
        authority += f":{port}"
    fixed = {"host": authority}
    fixed.update((name.lower(), value) for name, value in http.headers.items() if name.lower() not in _SKIP)
    fixed["accept-encoding"] = "identity"
    if not all(_safe(name) and _safe(value) for name, value in fixed.items()):
        return None
    return Http11Pool(host, port, parsed.raw_path.decode("ascii"), fixed, http)


def _safe(text: str) -> bool:
    return "\r" not in text and "\n" not in text and "\0" not in text


class Http11Pool:
    """Persistent connections to one origin; `stream(...)` makes one exchange on one of them."""

    def __init__(self, host: str, port: int, target: str, headers: Mapping[str, str], http: httpx2.AsyncClient) -> None:
        self._host, self._port = host, port
        self._target = target
        self._prefix = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")
        self._http = http  # for its cookie jar: a cookie set here is sent by httpx2 from then on
        self._idle: list[_Connection] = []
        self._open = 0
        self.max_connections = MAX_CONNECTIONS

    @property
    def usable(self) -> bool:
        """Whether a request may go through here now (no cookies to send, a connection free or allowed)."""
        return (bool(self._idle) or self._open < self.max_connections) and not self._http.cookies

    def stream(self, method: str, headers: Mapping[str, str], body: bytes = b"") -> Exchange:
        """One request; use as `async with pool.stream(...) as response`. Raises httpx2's errors."""
        lines = [f"{method} {self._target} HTTP/1.1\r\n".encode("ascii"), self._prefix]
        for name, value in headers.items():
            if not (_safe(name) and _safe(value)):
                raise httpx2.LocalProtocolError(f"illegal header value for {name!r}")
            lines.append(f"{name}: {value}\r\n".encode())
        if body or method == "POST":
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return Exchange(self, b"".join(lines))

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.discard()

    async def _acquire(self) -> tuple[_Connection, bool]:
        if self._idle:
            return self._idle.pop(), True
        self._open += 1
        try:
            stream = await anyio.connect_tcp(self._host, self._port)
        except OSError as exc:
            self._open -= 1
            raise httpx2.ConnectError(f"could not connect to {self._host}:{self._port}: {exc}") from exc
        except BaseException:
            self._open -= 1
            raise
        return _Connection(stream, self), False

    async def _release(self, connection: _Connection) -> None:
        if len(self._idle) < MAX_IDLE:
            connection.reset()
            self._idle.append(connection)
        else:
            await connection.discard()


class Exchange:
    """An async context manager around one request and its answer (`Response`)."""

    def __init__(self, pool: Http11Pool, request: bytes) -> None:
        self._pool = pool
        self._request = request
        self._scope = anyio.CancelScope()
        self._phase: type[httpx2.TimeoutException] = httpx2.ConnectTimeout
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        scope = self._scope
        scope.deadline = anyio.current_time() + CONNECT_TIMEOUT
        scope.__enter__()
        try:
            self._response = await self._send(scope)
        except BaseException as exc:
            if scope.__exit__(type(exc), exc, exc.__traceback__):
                raise self._phase("the upstream did not answer in time") from None
            raise
        return self._response

    async def _send(self, scope: anyio.CancelScope) -> Response:
        for attempt in range(2):
            self._phase = httpx2.ConnectTimeout
            connection, reused = await self._pool._acquire()
            try:
                self._phase = httpx2.WriteTimeout
                scope.deadline = anyio.current_time() + WRITE_TIMEOUT
                await connection.send(self._request)
                self._phase = httpx2.ReadTimeout
                scope.deadline = anyio.current_time() + READ_TIMEOUT
                connection.scope = scope
                while not connection.head_done:
                    await connection.receive()
                return Response(connection)
            except _StaleError as exc:
                await connection.discard()
                if reused and attempt == 0:
                    continue  # closed by the server while idle: nothing was read, so send it again
                raise httpx2.RemoteProtocolError("the upstream closed the connection without answering") from exc
            except BaseException:
                await connection.discard()
                raise
        raise AssertionError("unreachable")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        response, scope = self._response, self._scope
        try:
            if response is not None:
                await response._finish(clean=exc_type is None)
        except BaseException as error:
            if scope.__exit__(type(error), error, error.__traceback__):
                raise httpx2.ReadTimeout("the upstream did not answer in time") from None
            raise
        if scope.__exit__(exc_type, exc, tb):
            raise httpx2.ReadTimeout("the upstream did not answer in time") from None
        return False


def _decoders_for(content_encoding: str) -> list[zlib._Decompress]:
    """Decompressors for a `content-encoding` (gzip or deflate, in the order they were applied)."""
    decoders = []
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            decoders.append(zlib.decompressobj(zlib.MAX_WBITS | 16))
        elif coding == "deflate":
            decoders.append(zlib.decompressobj(zlib.MAX_WBITS))
        elif coding != "identity":
            raise httpx2.DecodingError(
                f"the upstream answered with content-encoding {coding!r}, which is not supported"
            )
    return decoders


def _decode(decoders: list[zlib._Decompress], data: bytes) -> bytes:
    try:
        for decoder in decoders:
            data = decoder.decompress(data)
    except zlib.error as exc:
        raise httpx2.DecodingError(f"the upstream's compressed answer is corrupt: {exc}") from exc
    return data


def _flush(decoders: list[zlib._Decompress]) -> bytes:
    data = b""
    try:
        for decoder in decoders:
            data = decoder.decompress(data) + decoder.flush()
    except zlib.error as exc:
        raise httpx2.DecodingError(f"the upstream's compressed answer is corrupt: {exc}") from exc
    return data


class _StaleError(Exception):
    """The connection ended before any byte of an answer came back."""


class Response:
    """An answer being read: status and headers at once, the body as it arrives."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status_code = connection.status
        self.headers: dict[str, str] = connection.headers
        if connection.cookies:
            _keep_cookies(connection.pool, self)
        # The request says `accept-encoding: identity`, but a server may compress anyway.
        self._decoders = _decoders_for(self.headers.get("content-encoding", ""))

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        connection = self._connection
        decoders = self._decoders
        while True:
            while connection.body:
                part = connection.body.popleft()
                yield _decode(decoders, part) if decoders else part
            if connection.done:
                if decoders:
                    yield _flush(decoders)
                return
            await connection.receive()

    async def aread(self) -> bytes:
        return b"".join([part async for part in self.aiter_bytes()])

    async def aiter_lines(self, limit: int = sys.maxsize) -> AsyncIterator[str]:
        """Lines without their end (`\\r\\n`, `\\n` or a lone `\\r`, as SSE allows), each yielded as soon
        as it is complete (a `\\r` ends its line at once: a `\\n` opening the next part is then skipped).

        Raises:
            LineTooLongError: a line passed `limit` bytes.
        """
        async for line in text_lines(self.aiter_bytes(), limit):
            yield line

    async def _finish(self, clean: bool) -> None:
        connection = self._connection
        if clean and not connection.done:
            # Closed early: finish a body that ends at once, so the connection can be used again.
            drained = 0
            with anyio.move_on_after(DRAIN_SECONDS):
                try:
                    while not connection.done and drained <= DRAIN_BYTES:
                        drained += sum(len(part) for part in connection.body)
                        connection.body.clear()
                        await connection.receive()
                except httpx2.HTTPError:
                    pass
        if clean and connection.done and connection.keep_alive:
            await connection.pool._release(connection)
        else:
            await connection.discard()


class _Connection:
    """One socket and the parser of the answer being read on it (httptools calls the `on_` methods)."""

    def __init__(self, stream: anyio.abc.SocketStream, pool: Http11Pool) -> None:
        self.stream = stream
        self.pool = pool
        self.scope: anyio.CancelScope | None = None
        self._closed = False
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.scope = None
        self.got_bytes = False
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.cookies: list[tuple[str, str]] = []
        self.body: deque[bytes] = deque()
        self._until_close = False

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _StaleError from exc

    async def receive(self) -> None:
        try:
            data = await self.stream.receive(65536)
        except anyio.EndOfStream:
            data = b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if not self.got_bytes:
                raise _StaleError from exc
            raise httpx2.ReadError(f"the upstream connection broke: {exc!r}") from exc
        if not data:
            if self.head_done and self._until_close:
                self.done = True  # a body delimited by the end of the connection
                self.keep_alive = False
                return
            if not self.got_bytes:
                raise _StaleError
            raise httpx2.RemoteProtocolError("the upstream closed the connection in the middle of an answer")
        self.got_bytes = True
        scope = self.scope
        if scope is not None:
            now = anyio.current_time()
            if scope.deadline - now < READ_TIMEOUT / 2:  # the read timeout counts from the latest bytes
                scope.deadline = now + READ_TIMEOUT
        if self.done:
            self.keep_alive = False  # bytes after the answer: not a connection to reuse
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpx2.RemoteProtocolError(f"malformed HTTP answer from the upstream: {exc}") from exc

    async def discard(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool._open -= 1
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:
            self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "set-cookie":
            self.cookies.append((key, text))
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        headers = self.headers
        self._until_close = "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")
        if 100 <= self.status < 200:
            raise httptools.HttpParserError("interim (1xx) answers are not expected")
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def _keep_cookies(pool: Http11Pool, response: Response) -> None:
    """Put cookies the upstream set into httpx2's jar, which sends them (the pool stands aside then)."""
    headers = [("set-cookie", value) for _, value in response._connection.cookies]
    request = httpx2.Request("POST", f"http://{pool._host}:{pool._port}{pool._target}")
    pool._http.cookies.extract_cookies(httpx2.Response(response.status_code, headers=headers, request=request))
