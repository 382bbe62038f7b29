"""No input ends a real `aperture serve` process: hostile messages over stdio and HTTP get clear errors.

Messages nested deeper than the gateway reads, ids that are no ids, requests before the handshake: each
gets an answer that says what to fix, and the process answers the next request as before.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest

from aperture.model.nesting import MAX_JSON_DEPTH
from tests.conftest import TEST_CONFIG
from tests.integration.conftest import APERTURE, free_port, stdio_params, wait_for_port
from tests.integration.test_sse_resume import HEADERS, events, open_session
from tests.mcp_helpers import initialize_request

pytestmark = pytest.mark.anyio

DEEP = 1000


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


class Wire:
    """JSON-RPC lines to and from a gateway process over its stdin and stdout."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.buffer = b""

    async def send(self, line: str | dict[str, Any]) -> None:
        assert self.process.stdin is not None
        text = line if isinstance(line, str) else json.dumps(line)
        await self.process.stdin.send((text + "\n").encode())

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        with anyio.fail_after(20):
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    async def handshake(self, request_id: int = 1) -> None:
        await self.send(initialize_request(request_id=request_id))
        assert (await self.receive())["id"] == request_id
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def still_serving(self, request_id: int) -> None:
        arguments = {"tool_id": "toolbox:calculate", "args": {"expression": "2 + 2"}}
        params = {"name": "run_tool", "arguments": arguments}
        await self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        answer = await self.receive()
        assert answer["id"] == request_id and answer["result"]["content"][0]["text"] == "4.0", answer


@asynccontextmanager
async def stdio_gateway() -> AsyncIterator[Wire]:
    params = stdio_params()
    async with await anyio.open_process([params.command, *params.args]) as process:
        yield Wire(process)
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(20):
            assert await process.wait() == 0


def call_line(request_id: int, arguments: str) -> str:
    return (
        f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call",'
        f'"params":{{"name":"run_tool","arguments":{arguments}}}}}'
    )


async def test_stdio_answers_messages_nested_too_deep_and_keeps_serving() -> None:
    async with stdio_gateway() as wire:
        await wire.handshake()
        lines = [
            (2, '{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"x":' + nested(DEEP) + "}}"),
            (3, call_line(3, '{"tool_id":"toolbox:calculate","args":{"x":' + nested(DEEP) + "}}")),  # the lean path's
            (None, "[" * 100_000),
            (4, call_line(4, '{"tool_id":"toolbox:calculate","args":{"x":' + nested(MAX_JSON_DEPTH) + "}}")),
        ]
        for request_id, line in lines:
            await wire.send(line)
            answer = await wire.receive()
            assert answer["id"] == request_id
            assert answer["error"]["code"] == -32600
            assert f"more than {MAX_JSON_DEPTH} levels deep" in answer["error"]["message"]
        # run_tool's args given as a JSON string: a tool error the model can act on
        as_string = json.dumps('{"expression":' + nested(DEEP) + "}")
        await wire.send(call_line(5, '{"tool_id":"toolbox:calculate","args":' + as_string + "}"))
        result = (await wire.receive())["result"]
        assert result["isError"] and result["structuredContent"]["error"]["code"] == "validation_input"
        assert "argument 'args' is a JSON string that nests" in result["content"][0]["text"]
        await wire.still_serving(6)


@pytest.mark.parametrize(
    "bad_id",
    [{"a": 1}, [1], True, None, 1.5],
    ids=["object", "array", "bool", "null", "fraction"],
)
async def test_stdio_answers_requests_whose_id_is_no_id(bad_id: Any) -> None:
    async with stdio_gateway() as wire:
        await wire.handshake()
        for method in ("ping", "tools/list"):
            await wire.send({"jsonrpc": "2.0", "id": bad_id, "method": method})
            answer = await wire.receive()
            assert answer["id"] is None and answer["error"]["code"] == -32600
            assert "id must be a string or an integer" in answer["error"]["message"]
        await wire.still_serving(2)


class HttpGateway:
    """`aperture serve --transport http` with its stderr kept in a file, to check nothing was logged per request."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpGateway]:
    port = free_port()
    gateway = HttpGateway(port, tmp_path_factory.mktemp("hostile") / "stderr.log")
    argv = [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", "http", "--port", str(port)]
    with gateway.log.open("wb") as log:
        process = subprocess.Popen(argv, stderr=log)
        try:
            wait_for_port(port)
            yield gateway
        finally:
            process.terminate()
            process.wait(10)


async def post(http: httpx2.AsyncClient, url: str, body: str, headers: dict[str, str]) -> tuple[int, Any]:
    """POST `body`; the status and the JSON-RPC message answering it (read off an SSE stream if need be)."""
    async with http.stream("POST", url, content=body.encode(), headers={**HEADERS, **headers}) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            found = [e["data"] async for e in events(response) if isinstance(e.get("data"), dict) and "id" in e["data"]]
            return response.status_code, found[0] if found else None
        raw = await response.aread()
        return response.status_code, json.loads(raw) if raw else None


async def http_still_serving(http: httpx2.AsyncClient, url: str, session: dict[str, str], request_id: int) -> None:
    status, answer = await post(http, url, call_line(request_id, CALCULATE), session)
    assert status == 200 and answer["result"]["content"][0]["text"] == "4.0", answer


CALCULATE = '{"tool_id":"toolbox:calculate","args":{"expression":"2 + 2"}}'


async def test_http_answers_bodies_nested_too_deep_with_400_and_keeps_serving(http_gateway: HttpGateway) -> None:
    url = http_gateway.url
    async with httpx2.AsyncClient(timeout=20) as http:
        session = await open_session(http, url, "2025-11-25")
        await http_still_serving(http, url, session, 2)  # the session's first call, so the next take the lean path
        modern = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "run_tool"}
        cases = [
            (3, '{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"x":' + nested(DEEP) + "}}", session),
            (4, call_line(4, '{"tool_id":"toolbox:calculate","args":{"x":' + nested(DEEP) + "}}"), session),
            (5, call_line(5, '{"tool_id":"toolbox:calculate","args":{"x":' + nested(DEEP) + "}}"), modern),
            (6, call_line(6, '{"tool_id":"toolbox:calculate","args":{"x":' + nested(MAX_JSON_DEPTH) + "}}"), session),
            (None, "[" * 100_000, {}),
        ]
        for request_id, body, headers in cases:
            status, answer = await post(http, url, body, headers)
            assert status == 400, (request_id, status, answer)
            assert answer["id"] == request_id and answer["error"]["code"] == -32600
            assert f"more than {MAX_JSON_DEPTH} levels deep" in answer["error"]["message"]
        await http_still_serving(http, url, session, 7)
    assert "Traceback" not in http_gateway.log.read_text(errors="replace")


@pytest.mark.parametrize(
    "bad_id",
    [{"a": 1}, [1], True, None, 1.5],
    ids=["object", "array", "bool", "null", "fraction"],
)
async def test_http_answers_requests_whose_id_is_no_id(http_gateway: HttpGateway, bad_id: Any) -> None:
    url = http_gateway.url
    async with httpx2.AsyncClient(timeout=20) as http:
        session = await open_session(http, url, "2025-11-25")
        for method in ("ping", "tools/list", "tools/call"):
            body = json.dumps({"jsonrpc": "2.0", "id": bad_id, "method": method, "params": {"name": "run_tool"}})
            status, answer = await post(http, url, body, session)
            assert status == 400 and answer["id"] is None and answer["error"]["code"] == -32600, (status, answer)
            assert "id must be a string or an integer" in answer["error"]["message"]
        await http_still_serving(http, url, session, 2)


def send_head(port: int, header_bytes: int) -> bytes:
    """A GET /healthz with one header of `header_bytes`, over a raw socket; what came back before the close."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        with contextlib.suppress(OSError):  # refused part way: the answer may still be there to read
            sock.sendall(head)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


@pytest.mark.parametrize("size", [100_000, 16 * 1024 * 1024], ids=["100kB", "16MB"])
async def test_http_refuses_oversized_headers_with_431(http_gateway: HttpGateway, size: int) -> None:
    answer = await anyio.to_thread.run_sync(send_head, http_gateway.port, size)
    assert not answer.startswith(b"HTTP/1.1 200")
    if size == 100_000 or answer:  # a 16 MB head may be cut off (a reset) before the answer is read
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert b"at most 65536 bytes" in answer
    assert (await anyio.to_thread.run_sync(send_head, http_gateway.port, 1000)).startswith(b"HTTP/1.1 200")


async def test_stdio_refuses_requests_before_the_handshake_is_complete() -> None:
    async with stdio_gateway() as wire:
        await wire.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        early = await wire.receive()
        assert early["id"] == 1 and early["error"]["code"] == -32600
        assert "Send initialize, then the notifications/initialized notification" in early["error"]["message"]
        await wire.send(initialize_request(request_id=2))
        assert (await wire.receive())["id"] == 2
        for request_id, method in ((3, "tools/list"), (4, "tools/call")):
            params = {"name": "run_tool", "arguments": {"tool_id": "toolbox:calculate", "args": {"expression": "1"}}}
            await wire.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            refused = await wire.receive()
            assert refused["id"] == request_id and refused["error"]["code"] == -32600, refused
            assert f"not initialized yet, so '{method}' was refused" in refused["error"]["message"]
        await wire.send({"jsonrpc": "2.0", "id": 5, "method": "ping"})
        assert (await wire.receive()) == {"jsonrpc": "2.0", "id": 5, "result": {}}
        await wire.send({"jsonrpc": "2.0", "id": 6, "method": "no/such/method"})
        assert (await wire.receive())["error"]["code"] == -32601
        await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await wire.still_serving(7)


async def test_http_refuses_requests_before_the_handshake_and_serves_2026_requests_without_one(
    http_gateway: HttpGateway,
) -> None:
    url = http_gateway.url
    async with httpx2.AsyncClient(timeout=20) as http:
        started = await http.post(url, json=initialize_request("2025-11-25"), headers=HEADERS)
        session = {"mcp-session-id": started.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        for request_id in (2, 3):  # the second would take the lean path, were the session ready
            status, answer = await post(http, url, call_line(request_id, CALCULATE), session)
            assert answer["id"] == request_id and answer["error"]["code"] == -32600, (status, answer)
            assert "not initialized yet" in answer["error"]["message"]
        await http.post(
            url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers={**HEADERS, **session}
        )
        await http_still_serving(http, url, session, 4)
        await http_still_serving(http, url, session, 5)
        envelope = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        params = {"name": "run_tool", "arguments": json.loads(CALCULATE), "_meta": envelope}
        modern = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "run_tool"}
        body = json.dumps({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": params})
        status, answer = await post(http, url, body, modern)
        assert status == 200 and answer["result"]["content"][0]["text"] == "4.0", answer
