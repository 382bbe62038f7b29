"""A gateway serving A2A beside MCP on 127.0.0.1 (uvicorn, in the test's event loop), and the official `a2a-sdk`
client on it; a `work` backend whose `slow` tool reports progress and waits until the test lets it finish."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers import get_data_parts, new_data_message, new_text_message
from a2a.types import Message, Role, SendMessageRequest, StreamResponse, Task

from aperture.config import parse_config
from aperture.execution import BackendRegistry, CallContext, PythonBackend
from aperture.gateway import Gateway
from aperture.surface.a2a import A2aSurface
from aperture.surface.mcp import McpSurface, http_app
from tests.mcp_helpers import serving

ROOT = Path(__file__).parent.parent.parent
DEV_KEY = "dev-" + "d" * 28  # bound to the toolset `text`
ADMIN_KEY = "adm-" + "a" * 28  # sees everything
JSONRPC, REST = "JSONRPC", "HTTP+JSON"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


AUTH: dict[str, Any] = {
    "auth": {
        "enabled": True,
        "local_roles": [],
        "api_keys": [
            {"name": "dev", "sha256": digest(DEV_KEY), "toolsets": ["text"]},
            {"name": "admin", "sha256": digest(ADMIN_KEY), "roles": ["admin"]},
        ],
    }
}


@dataclass
class Gate:
    """What the `work:slow` tool waits on and reports: started, let go, cancelled."""

    started: anyio.Event = field(default_factory=anyio.Event)
    go: anyio.Event = field(default_factory=anyio.Event)
    cancelled: anyio.Event = field(default_factory=anyio.Event)


def work_backend(gate: Gate) -> PythonBackend:
    work = PythonBackend("work")

    @work.tool(tags=["test"])
    async def slow(ctx: CallContext) -> str:
        """Report progress halfway, then wait until the test lets the call finish."""
        await ctx.report_progress(1, 2, "halfway")
        gate.started.set()
        try:
            await gate.go.wait()
        except BaseException:
            gate.cancelled.set()
            raise
        return "done"

    return work


@dataclass
class Served:
    base_url: str
    gateway: Gateway
    surface: A2aSurface
    gate: Gate


@asynccontextmanager
async def a2a_gateway(ops: dict[str, Any] | None = None, **extra: Any) -> AsyncIterator[Served]:
    """The toolbox and `work`, a toolset `text`, A2A and MCP over HTTP; yields where and what it serves."""
    gate = Gate()
    registry = BackendRegistry()
    await registry.register(work_backend(gate))
    raw: dict[str, Any] = {
        "search": {"strategy": "bm25"},
        "backends": [{"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")}],
        "toolsets": [
            {"name": "text", "description": "Text tools.", "include": {"tags": ["text"]}},
            {"name": "dates", "description": "Date tools.", "include": {"tags": ["date"]}},
        ],
        "ops": ops or {},
        **extra,
    }
    async with Gateway(parse_config(raw), registry=registry) as gateway:
        surface = A2aSurface(gateway)
        try:
            async with serving(surface.beside(http_app(McpSurface(gateway)))) as url:
                yield Served(url.removesuffix("/mcp"), gateway, surface, gate)
        finally:
            await surface.aclose()


@asynccontextmanager
async def a2a_client(
    base_url: str, *, key: str | None = None, streaming: bool = True, binding: str = JSONRPC, polling: bool = False
) -> AsyncIterator[Client]:
    """The SDK's client for the agent at `base_url` (its card fetched from the well-known path)."""
    headers = {"X-API-Key": key} if key else {}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        config = ClientConfig(
            streaming=streaming, polling=polling, httpx_client=http, supported_protocol_bindings=[binding]
        )
        client = await create_client(base_url, client_config=config)
        try:
            yield client
        finally:
            await client.close()


def data(payload: dict[str, Any]) -> SendMessageRequest:
    return SendMessageRequest(message=new_data_message(payload, role=Role.ROLE_USER))


def text(words: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(words, role=Role.ROLE_USER))


async def events(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    with anyio.fail_after(10):
        return [event async for event in client.send_message(request)]


async def final_task(client: Client, request: SendMessageRequest) -> Task:
    """The task a non-streaming send answers with."""
    (answer,) = await events(client, request)
    assert answer.HasField("task"), answer
    return answer.task


def artifact_data(task: Task) -> Any:
    """The JSON data of the task's (one) artifact."""
    (artifact,) = task.artifacts
    (found,) = get_data_parts(artifact.parts)
    return found


def status_text(message: Message) -> str:
    return "\n".join(part.text for part in message.parts if part.HasField("text"))
