"""SIGTERM on a serving gateway: calls in flight finish and are answered; those past the grace are told why.

A real `aperture serve` over stdio and over HTTP, with the fixture upstream behind it. Two calls are in
flight when SIGTERM arrives: one that finishes within `server.shutdown_grace` gets its own result (its
upstream is not stopped under it), the other gets a `shutting_down` error; then the process exits 0.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import APERTURE, free_port, wait_for_port
from tests.integration.test_hostile_input import Wire
from tests.integration.test_sse_resume import HEADERS, events, open_session

pytestmark = pytest.mark.anyio

GRACE = 6
QUICK, SLOW = 200, 100_000  # steps of `slow`, 10 ms each: within the grace, and far past it


def write_config(tmp_path: Path) -> Path:
    upstream = {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}
    config = {"server": {"expose": "both", "shutdown_grace": GRACE}, "mcpServers": {"up": upstream}}
    path = tmp_path / "shutdown.json"
    path.write_text(json.dumps(config))
    return path


def slow_call(request_id: int, steps: int) -> dict[str, Any]:
    params = {"name": "up__slow", "arguments": {"steps": steps}, "_meta": {"progressToken": f"p{request_id}"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def check_answers(answers: dict[int, dict[str, Any]]) -> None:
    quick, slow = answers[2]["result"], answers[3]["result"]
    assert not quick.get("isError") and quick["content"][0]["text"] == f"done after {QUICK} steps", quick
    assert slow["isError"] and slow["structuredContent"]["error"]["code"] == "shutting_down", slow
    assert "shutting down and stopped this call" in slow["content"][0]["text"]


async def test_sigterm_over_stdio_answers_every_call_in_flight(tmp_path: Path) -> None:
    async with await anyio.open_process([APERTURE, "serve", "--config", str(write_config(tmp_path))]) as process:
        wire = Wire(process)
        await wire.handshake()
        await wire.send(slow_call(2, QUICK))
        await wire.send(slow_call(3, SLOW))
        answers: dict[int, dict[str, Any]] = {}
        progressed: set[str] = set()
        while progressed != {"p2", "p3"}:
            message = await wire.receive()
            if message.get("method") == "notifications/progress":
                progressed.add(message["params"]["progressToken"])
            elif message.get("id") in (2, 3):
                answers[message["id"]] = message
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(GRACE + 20):
            while len(answers) < 2:
                message = await wire.receive()
                if message.get("id") in (2, 3):
                    answers[message["id"]] = message
            code = await process.wait()
    check_answers(answers)
    assert code == 0


async def test_sigterm_over_http_answers_every_call_in_flight(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    argv = [APERTURE, "serve", "--config", str(write_config(tmp_path)), "--transport", "http", "--port", str(port)]
    answers: dict[int, dict[str, Any]] = {}
    async with await anyio.open_process(argv) as process:
        await anyio.to_thread.run_sync(wait_for_port, port)
        async with httpx2.AsyncClient(timeout=GRACE + 30) as http:
            session = await open_session(http, url, "2025-11-25")
            progressed = {2: anyio.Event(), 3: anyio.Event()}

            async def call(request_id: int, steps: int) -> None:
                message = slow_call(request_id, steps)
                async with http.stream("POST", url, json=message, headers={**HEADERS, **session}) as response:
                    async for event in events(response):
                        data = event.get("data")
                        if isinstance(data, dict) and data.get("method") == "notifications/progress":
                            progressed[request_id].set()
                        elif isinstance(data, dict) and data.get("id") == request_id:
                            answers[request_id] = data

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, 2, QUICK)
                tg.start_soon(call, 3, SLOW)
                with anyio.fail_after(30):
                    for started in progressed.values():
                        await started.wait()
                process.send_signal(signal.SIGTERM)
        with anyio.fail_after(GRACE + 20):
            code = await process.wait()
    check_answers(answers)
    assert code == 0
