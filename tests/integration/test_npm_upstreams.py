"""The npm reference servers behind the gateway: everything (stdio and streamable HTTP), filesystem, memory.

`make test` installs them (package.json); they run on the machine's Node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import ROOT
from tests.integration.conftest import free_port, wait_for_port
from tests.mcp_helpers import run, text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
]

BIN = ROOT / "node_modules" / ".bin"


def npm_server(name: str, binary: str, *args: str) -> dict[str, Any]:
    path = BIN / binary
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make test` (it runs npm install) or `npm install`")
    return {"name": name, "kind": "mcp", "command": [str(path), *args]}


@contextmanager
def everything_on_port(mode: str) -> Iterator[int]:
    """server-everything over the network (`streamableHttp` or `sse`), on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mcp-server-everything"), mode],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def everything_http() -> Iterator[str]:
    with everything_on_port("streamableHttp") as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
async def client(tmp_path: Path, everything_http: str) -> AsyncIterator[Client]:
    (tmp_path / "notes.txt").write_text("remember the milk\n")
    config = parse_config(
        {
            "backends": [
                npm_server("everything", "mcp-server-everything", "stdio"),
                npm_server("files", "mcp-server-filesystem", str(tmp_path)),
                {**npm_server("memory", "mcp-server-memory"), "env": {"MEMORY_FILE_PATH": str(tmp_path / "m.json")}},
                {"name": "remote", "kind": "mcp", "url": everything_http},
            ]
        }
    )
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server, mode="legacy") as c:
        yield c


async def test_every_server_is_healthy_and_searchable(client: Client) -> None:
    namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
    assert {n["namespace"]: n["healthy"] for n in namespaces} == dict.fromkeys(
        ["everything", "files", "memory", "remote"], True
    ), namespaces
    found = (await client.call_tool("search_tools", {"query": "read a text file"})).structured_content
    assert any(t["id"].startswith("files:read") for t in found["tools"][:3]), found


async def test_everything_content_types_pass_through(client: Client) -> None:
    assert "hello" in text_of(await run(client, "everything:echo", {"message": "hello"}))
    image = await run(client, "everything:get-tiny-image")
    assert any(isinstance(b, mcp_types.ImageContent) for b in image.content)
    structured = await run(client, "everything:get-structured-content", {"location": "New York"})
    assert not structured.is_error and structured.structured_content["result"] is not None
    links = await run(client, "everything:get-resource-links", {"count": 2})
    assert any(isinstance(b, mcp_types.ResourceLink) for b in links.content)


async def test_long_running_operation_reports_progress(client: Client) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with anyio.fail_after(20):
        result = await client.call_tool(
            "run_tool",
            {"tool_id": "everything:trigger-long-running-operation", "args": {"duration": 1, "steps": 3}},
            progress_callback=on_progress,
        )
    assert not result.is_error, text_of(result)
    assert len(seen) == 3


async def test_filesystem_and_memory_servers(client: Client, tmp_path: Path) -> None:
    read = await run(client, "files:read_text_file", {"path": str(tmp_path / "notes.txt")})
    assert "remember the milk" in text_of(read)
    outside = await run(client, "files:read_text_file", {"path": "/etc/passwd"})
    assert outside.is_error
    created = await run(
        client, "memory:create_entities", {"entities": [{"name": "Ada", "entityType": "person", "observations": ["x"]}]}
    )
    assert not created.is_error, text_of(created)
    graph = await run(client, "memory:read_graph", {})
    assert "Ada" in text_of(graph)


async def test_everything_over_streamable_http(client: Client) -> None:
    assert "over http" in text_of(await run(client, "remote:echo", {"message": "over http"}))
    total = await run(client, "remote:get-sum", {"a": 2, "b": "3"})
    assert "5" in text_of(total)


async def test_resources_and_templates_are_listed_and_read(client: Client) -> None:
    resources = (await client.list_resources()).resources
    uris = {str(r.uri) for r in resources}
    assert "demo://resource/static/document/architecture.md" in uris
    read = await client.read_resource("demo://resource/static/document/architecture.md")
    assert "Architecture" in read.contents[0].text  # type: ignore[union-attr]
    templates = (await client.list_resource_templates()).resource_templates
    assert "demo://resource/dynamic/text/{resourceId}" in {t.uri_template for t in templates}
    dynamic = await client.read_resource("demo://resource/dynamic/text/7")
    assert dynamic.contents and str(dynamic.contents[0].uri) == "demo://resource/dynamic/text/7"


async def test_unknown_resource_is_a_clear_protocol_error(client: Client) -> None:
    with pytest.raises(MCPError, match="No upstream offers the resource 'nowhere://x'"):
        await client.read_resource("nowhere://x")


async def test_prompts_are_namespaced_and_routed(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert "everything__args-prompt" in prompts and "remote__args-prompt" in prompts
    result = await client.get_prompt("everything__args-prompt", {"city": "Lyon", "state": "Rhone"})
    assert "Lyon" in str(result.messages[0].content)
    with pytest.raises(MCPError, match="No prompt 'nope'"):
        await client.get_prompt("nope")


async def test_resource_subscriptions_reach_the_owner_and_updates_come_back(client: Client) -> None:
    updated = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            updated.set()

    client._session._message_handler = on_message  # type: ignore[union-attr]
    uri = "demo://resource/static/document/architecture.md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)  # a handshake-era client, as desktop clients are
        await client.subscribe_resource(uri)
        await run(client, "everything:toggle-subscriber-updates", {})
        with anyio.fail_after(15):
            await updated.wait()
        await client.unsubscribe_resource(uri)


async def test_legacy_sse_upstream() -> None:
    with everything_on_port("sse") as port:
        url = f"http://127.0.0.1:{port}/sse"
        config = parse_config({"backends": [{"name": "old", "kind": "mcp", "url": url, "transport": "sse"}]})
        async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
            assert "via sse" in text_of(await run(client, "old:echo", {"message": "via sse"}))


async def test_a_2026_client_listening_to_a_resource_gets_its_updates(tmp_path: Path) -> None:
    config = parse_config({"backends": [npm_server("everything", "mcp-server-everything", "stdio")]})
    uri = "demo://resource/static/document/architecture.md"
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await run(client, "everything:toggle-subscriber-updates", {})
            with anyio.fail_after(15):
                event = await anext(aiter(subscription))
        assert isinstance(event, ResourceUpdated) and event.uri == uri
