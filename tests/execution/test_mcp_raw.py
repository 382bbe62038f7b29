"""The lean request channel: ids of its own, answers and progress matched back, errors and closing.

The "upstream" here is the test itself: it reads the lines the channel writes and hands back answers
through `accept`, as the stdio transport's reader does (the real pipe is covered in the integration tests).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from aperture.execution.backends.mcp_raw import ChannelClosedError, RawChannel

pytestmark = pytest.mark.anyio


class Wire:
    """The lines a channel wrote, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self._read = 0

    async def send(self, data: bytes, request_id: str | None) -> None:
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        self.lines.append(json.loads(data))
        assert request_id == self.lines[-1].get("id")  # the transport is told which request a line carries

    async def next(self) -> dict[str, Any]:
        with anyio.fail_after(5):
            while len(self.lines) <= self._read:
                await anyio.sleep(0.001)
        self._read += 1
        return self.lines[self._read - 1]


async def test_a_request_is_answered_by_the_response_with_its_id() -> None:
    wire, channel = Wire(), RawChannel()
    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)
        results: list[Any] = []

        async def call(text: str) -> None:
            results.append(await channel.request("tools/call", {"name": "echo", "arguments": {"text": text}}))

        tg.start_soon(call, "a")
        tg.start_soon(call, "b")
        first, second = await wire.next(), await wire.next()
        assert first["id"] != second["id"] and all(isinstance(m["id"], str) for m in (first, second))
        assert not channel.accept({"jsonrpc": "2.0", "id": 7, "result": {}})  # the SDK session's, not ours
        assert not channel.accept({"jsonrpc": "2.0", "id": "ap-999", "result": {}})  # nobody waits for it
        # Answered out of order: each caller gets its own.
        for message in (second, first):
            text = message["params"]["arguments"]["text"]
            assert channel.accept({"jsonrpc": "2.0", "id": message["id"], "result": {"text": text}})
    assert sorted(r["text"] for r in results) == ["a", "b"]


async def test_progress_with_the_request_token_reaches_its_caller() -> None:
    wire, channel = Wire(), RawChannel()
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)
        tg.start_soon(channel.request, "tools/call", {"name": "slow"}, on_progress)
        request = await wire.next()
        token = request["params"]["_meta"]["progressToken"]
        progress = {"progressToken": token, "progress": 1, "total": 2, "message": "half"}
        assert channel.accept({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress})
        other = {"progressToken": "someone-else", "progress": 1}
        assert not channel.accept({"jsonrpc": "2.0", "method": "notifications/progress", "params": other})
        await anyio.sleep(0.05)
        channel.accept({"jsonrpc": "2.0", "id": request["id"], "result": {}})
    assert seen == [(1.0, 2.0, "half")]


async def test_an_error_response_raises_mcp_error() -> None:
    wire, channel = Wire(), RawChannel()
    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)

        async def answer() -> None:
            request = await wire.next()
            error = {"code": -32602, "message": "Unknown tool: nope"}
            channel.accept({"jsonrpc": "2.0", "id": request["id"], "error": error})

        tg.start_soon(answer)
        with pytest.raises(MCPError) as caught:
            await channel.request("tools/call", {"name": "nope"})
    assert caught.value.code == -32602 and "nope" in caught.value.message


async def test_closing_fails_waiting_requests_and_later_ones() -> None:
    wire, channel = Wire(), RawChannel()
    with pytest.raises(ChannelClosedError, match="not open"):
        await channel.request("tools/call", {})
    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)

        async def close_soon() -> None:
            await wire.next()
            channel.close("exited with code 3")

        tg.start_soon(close_soon)
        with pytest.raises(ChannelClosedError, match="code 3"):
            await channel.request("tools/call", {"name": "crash"})
    assert not channel.usable
    with pytest.raises(ChannelClosedError, match="code 3"):
        await channel.request("tools/call", {})


async def test_a_cancelled_request_is_cancelled_upstream() -> None:
    wire, channel = Wire(), RawChannel()
    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)
        with anyio.move_on_after(0.2):
            await channel.request("tools/call", {"name": "hang"})
    request, notice = wire.lines
    assert notice == {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request["id"]}}
    assert not channel.wants(b'{"id":"ap-1"}')  # nothing is pending any more


async def test_log_messages_are_seen_while_their_call_still_waits() -> None:
    wire, channel = Wire(), RawChannel()
    logs: list[tuple[dict[str, Any], Any]] = []
    answered: list[Any] = []
    channel.on_log = lambda params, context: logs.append((params, context))
    channel.on_answer = answered.append
    log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
    assert channel.wants(json.dumps(log).encode())  # even with nothing in flight: judged in order with answers
    assert channel.accept(log) and logs == [(log["params"], None)]
    logs.clear()
    async with anyio.create_task_group() as tg:
        channel.open(wire.send, tg)
        tg.start_soon(partial(channel.request, "tools/call", {"name": "log"}, context="first call"))
        first = await wire.next()
        # On a pipe the channel never guesses whose a message is, even with one call waiting: its caller judges.
        assert channel.wants(json.dumps(log).encode()) and channel.accept(log)
        assert logs == [(log["params"], None)]
        tg.start_soon(partial(channel.request, "tools/call", {"name": "log"}, context="second call"))
        second = await wire.next()
        channel.accept(log, stream_of=second["id"])  # it came on the second call's own (HTTP) stream
        assert logs[1:] == [(log["params"], "second call")]
        assert channel.context_of(first["id"]) == "first call" and channel.context_of("ap-999") is None
        for request in (first, second):
            channel.accept({"jsonrpc": "2.0", "id": request["id"], "result": {}})
        # Each answer is reported the moment it is read, before its waiter resumes.
        assert answered == ["first call", "second call"]
        channel.accept(log, stream_of=second["id"])  # the stream of a call already answered names nobody
        assert logs[-1] == (log["params"], None)
