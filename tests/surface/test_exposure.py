"""Exposure modes: meta-tools, passthrough, both, surfaced tools, and list_changed notices."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types
import pytest
from mcp import Client

from aperture.config import Config
from aperture.execution import PythonBackend
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from aperture.surface.mcp.exposure import flat_name
from tests.mcp_helpers import META_NAMES, text_of

pytestmark = pytest.mark.anyio


def test_flat_names_are_valid_short_and_a_function_of_the_id() -> None:
    assert flat_name("time:get_current_time") == "time__get_current_time"
    assert flat_name("time:get_current_time", "_") == "time_get_current_time"
    odd = flat_name("files.v2:read.file")
    assert odd.startswith("files_v2__read_file_") and len(odd) == len("files_v2__read_file_") + 8
    assert flat_name("files_v2:read_file") != flat_name("files.v2:read.file")
    long = flat_name("namespace:" + "x" * 120)
    assert len(long) == 64 and long == flat_name("namespace:" + "x" * 120)


async def surface_with(config: Config, expose: str, **server: Any) -> tuple[Gateway, McpSurface]:
    settings = config.server.model_copy(update={"expose": expose, **server})
    gateway = Gateway(config.model_copy(update={"server": settings}))
    return gateway, McpSurface(gateway)


async def test_passthrough_lists_every_tool_and_returns_its_own_result(config: Config) -> None:
    gateway, surface = await surface_with(config, "passthrough")
    async with gateway, Client(surface.server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "toolbox__calculate" in names and "faulty__echo" in names
        assert not names & META_NAMES
        result = await client.call_tool("toolbox__convert_units", {"value": 1, "from_unit": "km", "to_unit": "m"})
        assert result.structured_content["result"] == 1000.0  # the tool's own structured content, not wrapped
        bad = await client.call_tool("toolbox__calculate", {"expresion": "1"})
        assert bad.is_error and "Did you mean 'expression'?" in text_of(bad)
        unknown = await client.call_tool("search_tools", {"query": "x"})
        assert unknown.is_error and "No tool 'search_tools'" in text_of(unknown)


async def test_both_lists_meta_tools_and_every_tool(config: Config) -> None:
    gateway, surface = await surface_with(config, "both")
    async with gateway, Client(surface.server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= META_NAMES and "toolbox__hash_text" in names


async def test_surfaced_tools_sit_next_to_the_meta_tools(config: Config) -> None:
    gateway, surface = await surface_with(config, "meta", surfaced=["toolbox:calculate"])
    async with gateway, Client(surface.server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == META_NAMES | {"toolbox__calculate"}
        assert text_of(await client.call_tool("toolbox__calculate", {"expression": "2*21"})) == "42.0"


async def test_clients_hear_when_the_catalog_changes(config: Config) -> None:
    gateway, surface = await surface_with(config, "passthrough")
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            heard.set()

    async with gateway, anyio.create_task_group() as tg:
        tg.start_soon(surface.notify_changes)
        async with Client(surface.server, mode="legacy", message_handler=on_message) as client:
            await client.list_tools()
            live = PythonBackend("live")
            await gateway.registry.register(live)

            @live.tool
            def fresh() -> str:
                return "new"

            with anyio.fail_after(5):
                await heard.wait()
            names = {t.name for t in (await client.list_tools()).tools}
            assert "live__fresh" in names
        tg.cancel_scope.cancel()


async def test_2026_clients_hear_of_changes_through_subscriptions_listen(config: Config) -> None:
    gateway, surface = await surface_with(config, "passthrough")
    async with gateway, anyio.create_task_group() as tg:
        tg.start_soon(surface.notify_changes)
        async with Client(surface.server) as client:
            assert client.protocol_version == "2026-07-28"
            async with client.listen(tools_list_changed=True) as subscription:
                live = PythonBackend("live")
                await gateway.registry.register(live)
                with anyio.fail_after(5):
                    event = await anext(aiter(subscription))
                assert type(event).__name__ == "ToolsListChanged"
        tg.cancel_scope.cancel()
