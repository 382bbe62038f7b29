"""Capabilities behind the gateway: hot reload while calls run, reload on demand, and the agent's view through
the official MCP client (search finds a capability, run_tool calls it, bad arguments never reach the API)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from rest_api import ApiServer

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.execution.capabilities.conftest import capability, write
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio


def slow(name: str, api: ApiServer, tag: str, description: str) -> dict[str, Any]:
    doc = capability(
        name, api.url, path="/slow", params={"seconds": "{seconds}", "tag": tag}, schema={"seconds": {"type": "number"}}
    )
    doc["description"] = description
    return doc


async def open_gateway(directory: Path, *, watch: bool = True) -> Gateway:
    config = parse_config(
        {
            "backends": [
                {
                    "name": "api",
                    "kind": "capabilities",
                    "directory": directory.name,
                    "watch": watch,
                    "allow_private_networks": True,
                }
            ],
            "search": {"strategy": "bm25"},
        },
        base_dir=directory.parent,
    )
    return Gateway(config)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Path]]:
    directory = tmp_path / "caps"
    directory.mkdir()
    async with await open_gateway(directory) as gateway:
        yield gateway, directory


def ids_for(gateway: Gateway, query: str) -> list[str]:
    return [hit["id"] for hit in gateway.search(query)["tools"]]


async def until(gateway: Gateway, condition: Callable[[], bool], within: float = 1.0) -> float:
    """Wait for catalog changes until `condition()` holds; the seconds it took."""
    started = time.perf_counter()
    changed = anyio.Event()

    def wake() -> None:
        nonlocal changed
        changed.set()

    gateway.on_tools_changed(wake)
    with anyio.fail_after(within):
        while not condition():
            await changed.wait()
            changed = anyio.Event()
    return time.perf_counter() - started


async def test_a_dropped_file_is_searchable_and_callable_within_a_second(
    watched: tuple[Gateway, Path], api: ApiServer
) -> None:
    gateway, directory = watched
    write(directory, "quotes.yaml", slow("quote_of_the_day", api, "v1", "Fetch the famous quote of the day."))
    took = await until(gateway, lambda: "api:quote_of_the_day" in ids_for(gateway, "famous quote"))
    assert took < 1.0
    result = await gateway.run("api:quote_of_the_day", {"seconds": 0})
    assert not result.is_error, result.text
    assert result.structured == {"slow": True, "tag": "v1"}


async def test_hot_reload_while_calls_run_add_change_break_delete(
    watched: tuple[Gateway, Path], api: ApiServer
) -> None:
    gateway, directory = watched
    path = write(directory, "job.yaml", slow("job", api, "v1", "Run the nightly job."))
    await until(gateway, lambda: "api:job" in gateway.registry.snapshot.tools)
    results: dict[str, Any] = {}

    async def running() -> None:
        results["during"] = await gateway.run("api:job", {"seconds": 0.6})

    async with anyio.create_task_group() as tg:
        tg.start_soon(running)
        with anyio.fail_after(5):
            while api.recorder.count("/slow") == 0:
                await anyio.sleep(0.01)
        # change: new description and tag while the first call is still waiting for its answer
        write(directory, "job.yaml", slow("job", api, "v2", "Run the weekly report."))
        await until(gateway, lambda: "api:job" in ids_for(gateway, "weekly report"))
        # add
        write(directory, "extra.yaml", slow("extra", api, "e1", "An extra capability."))
        await until(gateway, lambda: "api:extra" in gateway.registry.snapshot.tools)
    assert results["during"].structured == {"slow": True, "tag": "v1"}  # finished on the definition it started with
    assert (await gateway.run("api:job", {"seconds": 0})).structured == {"slow": True, "tag": "v2"}

    # a broken edit keeps the working version, and says why
    path.write_text("name: job\nproviders: [oops\n")
    backend = gateway.registry.get("api")
    reloads = backend.reloads  # type: ignore[union-attr]
    with anyio.fail_after(2):
        while backend.reloads == reloads:  # type: ignore[union-attr]
            await anyio.sleep(0.02)
    assert (await gateway.run("api:job", {"seconds": 0})).structured == {"slow": True, "tag": "v2"}
    namespaces = await gateway.list_namespaces()
    assert "malformed YAML" in namespaces["namespaces"][0]["message"]

    # delete
    path.unlink()
    await until(gateway, lambda: "api:job" not in gateway.registry.snapshot.tools)
    assert (await gateway.run("api:job", {})).error is not None


async def test_reload_on_demand_without_watching(tmp_path: Path, api: ApiServer) -> None:
    directory = tmp_path / "caps"
    directory.mkdir()
    async with await open_gateway(directory, watch=False) as gateway:
        write(directory, "later.yaml", slow("later", api, "l", "Arrives later."))
        assert "api:later" not in gateway.registry.snapshot.tools
        reports = await gateway.reload_capabilities()
        assert reports["api"].summary() == "1 capabilities from 1 files; 0 errors, 0 warnings"
        assert "api:later" in ids_for(gateway, "arrives later")


async def test_a_missing_directory_is_reported_and_the_gateway_still_serves(tmp_path: Path, api: ApiServer) -> None:
    async with await open_gateway(tmp_path / "not-there") as gateway:
        namespaces = (await gateway.list_namespaces())["namespaces"]
        assert namespaces[0]["tool_count"] == 0
        assert "does not exist" in namespaces[0]["message"]
        (tmp_path / "not-there").mkdir()
        write(tmp_path / "not-there", "a.yaml", slow("appeared", api, "a", "It appeared."))
        await gateway.reload_capabilities()
        assert "api:appeared" in gateway.registry.snapshot.tools
        write(tmp_path / "not-there", "b.yaml", slow("watched", api, "b", "Watched from now on."))
        await until(gateway, lambda: "api:watched" in gateway.registry.snapshot.tools, within=3)


async def test_the_agent_finds_and_runs_a_capability_through_mcp(tmp_path: Path, api: ApiServer) -> None:
    directory = tmp_path / "caps"
    directory.mkdir()
    doc = capability(
        "lookup_invoice",
        api.url,
        path="/echo/invoices/{invoice_id}",
        schema={"invoice_id": {"type": "integer", "description": "The invoice number."}},
    )
    doc["description"] = "Look up an invoice by its number in the billing system."
    doc["schema"]["input"]["required"] = ["invoice_id"]
    doc["metadata"] = {"tags": ["billing"], "read_only": True}
    write(directory, "invoice.yaml", doc)
    async with await open_gateway(directory) as gateway, Client(McpSurface(gateway).server) as client:
        found = (await client.call_tool("search_tools", {"query": "find an invoice in billing"})).structured_content
        assert found is not None and found["tools"][0]["id"] == "api:lookup_invoice"
        described = await client.call_tool("describe_tool", {"tool_id": "api:lookup_invoice", "detail_level": "full"})
        assert "readOnlyHint" in text_of(described)

        result = await run(client, "api:lookup_invoice", {"invoice_id": "42"})  # "42" is coerced to 42
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        assert result.structured_content["result"]["path"] == "/echo/invoices/42"

        api.recorder.clear()
        bad = await run(client, "api:lookup_invoice", {"invoice_id": "forty-two", "extra": 1})
        assert bad.is_error
        assert "invoice_id" in text_of(bad) and "extra" in text_of(bad)
        assert api.recorder.requests == []  # no HTTP request for invalid arguments
