"""No input ends a real `aperture serve` process: hostile messages over stdio and HTTP get clear errors.

Messages nested deeper than the gateway reads, ids that are no ids, requests before the handshake: each
gets an answer that says what to fix, and the process answers the next request as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from aperture.model.nesting import MAX_JSON_DEPTH
from tests.integration.conftest import stdio_params
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
        await wire.still_serving(5)


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
