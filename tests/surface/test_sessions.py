"""Sessions end without a trace: once a client closes its session, nothing of it stays in the gateway.

The gateway keeps a few things per handshake-era connection (its session, to send it notices; its log
level). These are dropped when the connection closes: a weak key would not do, as the session held
as the value refers to its connection. Checked in memory and over streamable HTTP (the app under
uvicorn in this process, so its objects can be looked at).
"""

from __future__ import annotations

import gc
import sys
import warnings
import weakref
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from aperture.config import Config
from aperture.execution import McpBackend
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from aperture.surface.mcp.transport import http_app
from tests.conftest import FIXTURES
from tests.mcp_helpers import serving

pytestmark = pytest.mark.anyio


async def set_level(client: Client) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)  # a handshake-era client, as desktop clients are
        await client.set_logging_level("debug")


def watch_closing(surface: McpSurface) -> tuple[list[weakref.ref[Any]], anyio.Event]:
    """Weak references to the (one) remembered connection and its session, and an event set as it closes."""
    [(connection, session)] = list(surface._sessions.items())
    closed = anyio.Event()
    connection.exit_stack.callback(closed.set)  # type: ignore[attr-defined]
    return [weakref.ref(connection), weakref.ref(session)], closed


async def test_a_closed_in_memory_session_is_collected(gateway: Gateway) -> None:
    surface = McpSurface(gateway)
    async with Client(surface.server, mode="legacy") as client:
        await set_level(client)
        await client.list_tools()
        refs, closed = watch_closing(surface)
    with anyio.fail_after(5):
        await closed.wait()
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    assert not surface._sessions and not surface._log_levels


async def test_a_closed_http_session_is_collected(gateway: Gateway) -> None:
    surface = McpSurface(gateway)
    async with serving(http_app(surface)) as url:
        async with Client(url, mode="legacy") as client:
            await set_level(client)
            await client.list_tools()
            result = await client.call_tool("search_tools", {"query": "hash"})  # the lean path, once known
            assert not result.is_error
            result = await client.call_tool("search_tools", {"query": "units"})
            assert not result.is_error
            refs, closed = watch_closing(surface)
            manager = surface.server.session_manager
            [transport] = manager._server_instances.values()
            refs.append(weakref.ref(transport))
            del transport
        with anyio.fail_after(5):
            await closed.wait()
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None]
        assert not surface._sessions and not surface._log_levels


async def test_a_closed_sessions_resource_subscriptions_end_with_it() -> None:
    upstream = {"name": "conf", "kind": "mcp", "command": [sys.executable, str(FIXTURES / "conformance_server.py")]}
    config = Config.model_validate({"backends": [upstream], "search": {"strategy": "bm25"}})
    async with Gateway(config) as gateway:
        surface = McpSurface(gateway)
        backend = gateway.registry.get("conf")
        assert isinstance(backend, McpBackend)
        unsubscribed = anyio.Event()
        original = backend.subscribe_resource

        async def watched(uri: str, subscribe: bool = True) -> None:
            await original(uri, subscribe)
            if not subscribe:
                unsubscribed.set()

        backend.subscribe_resource = watched  # type: ignore[method-assign]
        async with Client(surface.server, mode="legacy") as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource("test://watched-resource")
            [connection] = [c for subscribers in surface.federation._subscribers.values() for c in subscribers]
            ref = weakref.ref(connection)
            del connection
        with anyio.fail_after(5):
            await unsubscribed.wait()  # the upstream is no longer asked for updates no one will get
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        assert ref() is None
        assert not surface.federation._subscribers


def test_the_private_sdk_parts_the_session_adapter_needs_are_there() -> None:
    # sessions.py reaches these private parts of the SDK; without them the gateway would run without
    # per-caller session limits, session binding and resumable streams (it only logs a warning), so an SDK
    # upgrade that drops one must fail here, loudly, before it ships.
    import inspect

    from mcp.server.streamable_http import StreamableHTTPServerTransport
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    for method in ("_admit_session", "_discard_session"):
        assert callable(getattr(StreamableHTTPSessionManager, method, None)), method
    assert "self._server_instances" in inspect.getsource(StreamableHTTPSessionManager.__init__)
    for method in ("_mint_priming_event", "_create_session_message"):
        assert callable(getattr(StreamableHTTPServerTransport, method, None)), method
    transport_init = inspect.getsource(StreamableHTTPServerTransport.__init__)
    for attribute in ("self._idle_timeout", "self._event_store", "self.mcp_session_id"):
        assert attribute in transport_init, attribute
