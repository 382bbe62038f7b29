"""Small helpers for tests that talk to the gateway through the official MCP client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
import uvicorn
from mcp import Client
from starlette.types import ASGIApp


def initialize_request(version: str = "2025-11-25", request_id: int = 1) -> dict[str, Any]:
    """A raw JSON-RPC `initialize` request, for tests that speak the wire themselves."""
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


META_NAMES = {
    "search_tools",
    "describe_tool",
    "run_tool",
    "run_chain",
    "list_tool_examples",
    "list_tools",
    "list_namespaces",
}


def text_of(result: mcp_types.CallToolResult) -> str:
    """The text blocks of a result, joined."""
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


def error_of(result: mcp_types.CallToolResult) -> dict[str, Any]:
    """The structured error of a failed result (fails the test if the call succeeded)."""
    assert result.is_error, text_of(result)
    error: dict[str, Any] = result.structured_content["error"]
    return error


async def run(client: Client, tool_id: Any, args: Any = None) -> mcp_types.CallToolResult:
    """Call `run_tool`, leaving `args` out when None."""
    payload: dict[str, Any] = {"tool_id": tool_id}
    if args is not None:
        payload["args"] = args
    return await client.call_tool("run_tool", payload)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` under uvicorn on a free port of 127.0.0.1, in this event loop; yields its MCP URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])  # already listening: clients may connect at once
            try:
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                server.should_exit = True
