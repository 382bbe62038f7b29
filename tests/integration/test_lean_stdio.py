"""The lean `tools/call` path on stdio answers exactly as the SDK's path does, and keeps progress and cancellation.

A real `aperture serve` process over stdio with the fixture upstream behind it, driven line by line. A
request carrying a `_meta` key the lean path does not know takes the SDK's path, so the same call can be
made both ways on one connection and the answers compared.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import FIXTURES
from tests.integration.conftest import APERTURE
from tests.mcp_helpers import initialize_request

pytestmark = pytest.mark.anyio

MODERN = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
SDK_PATH = {"example.com/force-sdk-path": True}  # a key the lean path leaves to the SDK


class RawSession:
    """JSON-RPC lines to and from a gateway process."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.buffer = b""
        self.notifications: list[dict[str, Any]] = []
        self.next_id = 100

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(message) + "\n").encode())

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        with anyio.fail_after(10):
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    async def answer_to(self, request_id: Any) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message.get("id") == request_id and "method" not in message:
                return message
            self.notifications.append(message)

    async def call(self, name: str, arguments: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta is not None:
            params["_meta"] = meta
        await self.send({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": params})
        return await self.answer_to(self.next_id)

    async def handshake(self) -> None:
        await self.send(initialize_request())
        await self.answer_to(1)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


def write_config(tmp_path: Path) -> Path:
    config = {
        "server": {"expose": "both"},
        # (BM25: a first search while the semantic index warms would rank otherwise than the next one)
        "search": {"strategy": "bm25"},
        "mcpServers": {"up": {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}},
    }
    path = tmp_path / "lean.json"
    path.write_text(json.dumps(config))
    return path


@asynccontextmanager
async def gateway_process(tmp_path: Path) -> AsyncIterator[RawSession]:
    command = [APERTURE, "serve", "--config", str(write_config(tmp_path))]
    async with await anyio.open_process(command) as process:
        yield RawSession(process)
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(10):
            await process.wait()


CALLS: list[tuple[str, Any]] = [
    ("up__echo", {"text": "hello"}),
    ("up__add", {"a": "2", "b": 3}),  # coerced, structured output
    ("up__image", {}),
    ("up__resources", {}),
    ("up__fail", {}),
    ("up__nope", {}),  # unknown tool
    ("up__echo", {"wrong": 1}),  # invalid arguments
    ("run_tool", {"tool_id": "up:echo", "args": {"text": "meta"}}),
    ("run_tool", {"tool_id": "up:add", "args": {"a": 1}}),
    ("search_tools", {"query": "echo text"}),
]


def without_timing(answer: dict[str, Any]) -> dict[str, Any]:
    structured = answer.get("result", {}).get("structuredContent")
    if isinstance(structured, dict):
        structured.pop("duration_ms", None)
    return answer


@pytest.mark.parametrize("era", ["2026-07-28", "handshake"])
async def test_lean_answers_equal_the_sdk_answers(tmp_path: Path, era: str) -> None:
    async with gateway_process(tmp_path) as session:
        lean_meta: dict[str, Any] | None = MODERN
        if era == "handshake":
            await session.handshake()
            lean_meta = None
            # The first call of a handshake-era connection goes the SDK's way (the session is not known yet).
            assert (await session.call("up__echo", {"text": "first"}))["result"]["content"][0]["text"] == "first"
        for name, arguments in CALLS:
            lean = without_timing(await session.call(name, arguments, lean_meta))
            sdk = without_timing(await session.call(name, arguments, {**(lean_meta or {}), **SDK_PATH}))
            assert {k: v for k, v in lean.items() if k != "id"} == {k: v for k, v in sdk.items() if k != "id"}, name


async def test_lean_call_reports_progress_and_answers_after_it(tmp_path: Path) -> None:
    async with gateway_process(tmp_path) as session:
        answer = await session.call("up__slow", {"steps": 3}, {**MODERN, "progressToken": "tok"})
        assert not answer["result"]["isError"]
        progress = [n for n in session.notifications if n.get("method") == "notifications/progress"]
        assert [n["params"]["progress"] for n in progress] == [1, 2, 3]
        assert {n["params"]["progressToken"] for n in progress} == {"tok"}


async def test_cancelling_a_lean_call_cancels_it_upstream_and_it_is_not_answered(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with gateway_process(tmp_path) as session:
        await session.call("up__echo", {"text": "the upstream is up"}, MODERN)
        params = {"name": "up__wait_for_cancel", "arguments": {"marker": str(marker)}, "_meta": MODERN}
        await session.send({"jsonrpc": "2.0", "id": "c1", "method": "tools/call", "params": params})
        await anyio.sleep(0.5)
        await session.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c1"}})
        with anyio.fail_after(10):
            while not marker.exists():
                await anyio.sleep(0.05)
        # The next call is answered, and nothing was sent for the cancelled one.
        assert (await session.call("up__echo", {"text": "after"}, MODERN))["result"]["content"][0]["text"] == "after"
        assert not [n for n in session.notifications if n.get("id") == "c1"]


async def test_bad_calls_on_the_lean_path_get_the_sdk_errors(tmp_path: Path) -> None:
    async with gateway_process(tmp_path) as session:
        for request_id, params in enumerate(
            [
                {"name": "up__echo", "arguments": "not an object", "_meta": MODERN},
                {"name": 42, "arguments": {}, "_meta": MODERN},
            ]
        ):
            await session.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
            answer = await session.answer_to(request_id)
            assert "error" in answer or answer["result"].get("isError"), answer
        # A duplicate id while the first call runs goes to the SDK, which answers it; both get answers.
        slow = {"name": "up__slow", "arguments": {"steps": 2}, "_meta": MODERN}
        await session.send({"jsonrpc": "2.0", "id": "dup", "method": "tools/call", "params": slow})
        await session.send({"jsonrpc": "2.0", "id": "dup", "method": "tools/call", "params": slow})
        await session.answer_to("dup")
        await session.answer_to("dup")


async def test_many_concurrent_lean_calls_each_get_their_own_answer(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with Client(StdioServerParameters(command=APERTURE, args=["serve", "--config", str(config)])) as client:
        answers: dict[int, str] = {}

        async def one(i: int) -> None:
            result = await client.call_tool("up__echo", {"text": f"n{i}"})
            answers[i] = result.content[0].text  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        assert answers == {i: f"n{i}" for i in range(50)}


async def test_short_answers_written_at_once_never_tear_or_overtake_long_ones(tmp_path: Path) -> None:
    # Short answers skip the writer task when nothing is queued; long ones (past the pipe's atomic size and
    # its buffer) queue. A raw reader that waits before reading makes the long writes block part-way.
    async with gateway_process(tmp_path) as session:
        await session.handshake()
        await session.call("up__echo", {"text": "first"})  # the connection is known: calls go the lean way
        texts = {n: ("x" * 200_000 if n % 3 == 0 else f"short {n}") for n in range(30)}
        for n, text in texts.items():
            params = {"name": "up__echo", "arguments": {"text": text}}
            await session.send({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params})
        await anyio.sleep(0.5)
        answers = {}
        for _ in texts:
            message = await session.receive()  # every line parses as one whole message
            answers[message["id"]] = message["result"]["content"][0]["text"]
        assert answers == texts
