"""The lean `tools/call` path on streamable HTTP answers as the SDK's path does, and keeps its guarantees.

A real `aperture serve --transport http` with the fixture upstream behind it, driven with raw HTTP as a
handshake-era client. A request carrying a `_meta` key the lean path does not know takes the SDK's
path, so the same call is made both ways on one session and the answers compared.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.conftest import FIXTURES
from tests.integration.conftest import serving_http
from tests.integration.test_sse_resume import HEADERS, events, open_session

pytestmark = pytest.mark.anyio
SDK_PATH = {"example.com/force-sdk-path": True}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    upstream = {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]}
    config = tmp_path_factory.mktemp("lean") / "lean.json"
    # (BM25: a first search while the semantic index warms would rank otherwise than the next one)
    config.write_text(
        json.dumps({"server": {"expose": "both"}, "search": {"strategy": "bm25"}, "mcpServers": {"up": upstream}})
    )
    with serving_http(config) as url:
        yield url


class Session:
    """One raw handshake-era session."""

    def __init__(self, http: httpx2.AsyncClient, url: str, headers: dict[str, str]) -> None:
        self.http, self.url, self.headers = http, url, headers
        self.next_id = 10

    async def post(self, message: dict[str, Any], **extra: str) -> tuple[httpx2.Response, list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []
        headers = {**HEADERS, **self.headers, **extra}
        async with self.http.stream("POST", self.url, json=message, headers=headers) as response:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                seen = [event async for event in events(response)]
            else:
                await response.aread()
        return response, seen

    async def call(self, name: str, arguments: Any, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.next_id += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": params}
        response, seen = await self.post(message)
        assert response.status_code == 200, response.status_code
        return seen


async def session(http: httpx2.AsyncClient, url: str, version: str) -> Session:
    opened = Session(http, url, await open_session(http, url, version))
    await opened.call("up__echo", {"text": "first"})  # the first call of a session goes the SDK's way
    return opened


def shape(seen: list[dict[str, Any]]) -> list[Any]:
    """What the client reads off a stream: priming or not, then each message (ids and timings dropped)."""
    out: list[Any] = []
    for event in seen:
        data = event.get("data")
        if data == "":
            out.append(("priming", "id" in event, event.get("retry")))
            continue
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "id"}
            structured = data.get("result", {}).get("structuredContent")
            if isinstance(structured, dict):
                structured.pop("duration_ms", None)
        out.append((event.get("event"), "id" in event, data))
    return out


CALLS: list[tuple[str, Any]] = [
    ("up__echo", {"text": "hello"}),
    ("up__add", {"a": "2", "b": 3}),
    ("up__image", {}),
    ("up__resources", {}),
    ("up__fail", {}),
    ("up__nope", {}),
    ("up__echo", {"wrong": 1}),
    ("run_tool", {"tool_id": "up:echo", "args": {"text": "meta"}}),
    ("up__slow", {"steps": 3}),
]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_lean_streams_equal_the_sdk_streams(url: str, version: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = await session(http, url, version)
        for name, arguments in CALLS:
            progress = {"progressToken": "tok"} if name == "up__slow" else {}
            lean = await raw.call(name, arguments, progress or None)
            sdk = await raw.call(name, arguments, {**progress, **SDK_PATH})
            assert shape(lean) == shape(sdk), name
        assert any(e[0] == "priming" for e in shape(lean)) == (version == "2025-11-25")


async def test_log_messages_of_a_lean_call_ride_its_stream(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = await session(http, url, "2025-06-18")
        seen = await raw.call("up__log", {"message": "on the stream"})
        methods = [e["data"].get("method") for e in seen if isinstance(e.get("data"), dict)]
        assert methods == ["notifications/message", None]
        assert seen[0]["data"]["params"]["data"] == "on the stream"


async def test_cancelling_a_lean_call_cancels_it_upstream(url: str, tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = await session(http, url, "2025-06-18")
        answers: list[list[dict[str, Any]]] = []

        async def call() -> None:
            answers.append(await raw.call("up__wait_for_cancel", {"marker": str(marker)}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(0.5)
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": raw.next_id}}
            response, _ = await raw.post(cancel)
            assert response.status_code == 202
        assert answers[0][-1]["data"]["error"]["code"] == -32800
        with anyio.fail_after(5):
            while not marker.exists():
                await anyio.sleep(0.02)


async def test_a_lean_stream_can_be_resumed_from_its_events(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = await session(http, url, "2025-11-25")
        seen = await raw.call("up__echo", {"text": "kept"})
        priming = seen[0]["id"]
        headers = {"accept": "text/event-stream", "last-event-id": priming, **raw.headers}
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            with anyio.fail_after(5):
                async for event in events(stream):
                    assert event["data"]["result"]["content"][0]["text"] == "kept"
                    break


async def test_the_lean_path_keeps_the_sdk_refusals(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        raw = await session(http, url, "2025-06-18")
        call = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {"name": "up__echo", "arguments": {}}}
        rebinding, _ = await raw.post(call, host="evil.example.com")
        assert rebinding.status_code == 421
        unknown, _ = await raw.post(call, **{"mcp-session-id": "no-such-session"})
        assert unknown.status_code == 404
        oversized = {**call, "params": {"name": "up__echo", "arguments": {"text": "x" * (5 * 1024 * 1024)}}}
        too_big, _ = await raw.post(oversized)
        assert too_big.status_code == 413
        await http.delete(url, headers={**HEADERS, **raw.headers})
        ended, _ = await raw.post(call)
        assert ended.status_code == 404


MODERN = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def modern_call(http: httpx2.AsyncClient, url: str, name: str, arguments: Any, meta: dict[str, Any]) -> Any:
    """A 2026-07-28 call: (content type, the messages read off the body)."""
    params = {"name": name, "arguments": arguments, "_meta": meta}
    message = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}
    headers = {**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}
    async with http.stream("POST", url, json=message, headers=headers) as response:
        kind = response.headers["content-type"].split(";")[0]
        if kind == "application/json":
            return kind, [json.loads(await response.aread())]
        return kind, [event["data"] async for event in events(response)]


async def test_2026_calls_answer_as_the_sdk_does(url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for name, arguments in CALLS:
            progress = {"progressToken": "tok"} if name == "up__slow" else {}
            lean = await modern_call(http, url, name, arguments, {**MODERN, **progress})
            sdk = await modern_call(http, url, name, arguments, {**MODERN, **progress, **SDK_PATH})
            for answer in (lean, sdk):
                for message in answer[1]:
                    structured = message.get("result", {}).get("structuredContent")
                    if isinstance(structured, dict):
                        structured.pop("duration_ms", None)
            assert lean == sdk, name
        assert lean[0] == "text/event-stream"  # progress first: a stream, as the SDK does
        mismatch = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "up__echo", "_meta": MODERN}},
            headers={**HEADERS, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "x"},
        )
        assert mismatch.status_code == 400  # the header names another tool: the SDK's refusal


async def test_a_client_hanging_up_cancels_its_lean_call(url: str, tmp_path: Path) -> None:
    marker = tmp_path / "hung-up"
    async with httpx2.AsyncClient(timeout=10) as http:
        with anyio.move_on_after(1):
            await modern_call(http, url, "up__wait_for_cancel", {"marker": str(marker)}, MODERN)
    with anyio.fail_after(5):
        while not marker.exists():
            await anyio.sleep(0.02)
