"""A gRPC backend over time: a server that goes away is marked down in search and comes back when it returns;
methods the server gains are picked up on refresh, through the integrity check like any upstream tool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from grpc_shop import ShopServer

from tests.execution.grpc.conftest import gateway_client, shop_config, until
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

PURGE = "shop:shop.v1.Admin.Purge"
GET = "shop:shop.v1.Inventory.GetItem"
FAST = {"refresh_interval": 0.1, "connect_timeout": 1}


@pytest.fixture
def own_shop() -> Iterator[ShopServer]:
    """A shop of this test's own (it is stopped and started again), with the Inventory service only."""
    server = ShopServer(services=("Inventory",)).start()
    yield server
    server.stop()


async def hits(client: Any, query: str) -> dict[str, Any]:
    result = await client.call_tool("search_tools", {"query": query, "limit": 3})
    return {hit["id"]: hit for hit in result.structured_content["tools"]}


@pytest.mark.parametrize("reflection", [True, False], ids=["reflection", "protos"])
async def test_a_server_that_goes_away_is_marked_down_and_comes_back(own_shop: ShopServer, reflection: bool) -> None:
    source = {} if reflection else {"reflection": False, "protos": ["shop/v1/shop.proto"]}
    async with gateway_client(shop_config(own_shop.target, **FAST, **source)) as (gateway, client):
        assert not (await run(client, GET, {"sku": "SKU-1"})).is_error
        own_shop.stop()
        await until(gateway, lambda: "shop" in gateway.unavailable())
        assert "backend 'shop' is down" in gateway.unavailable()["shop"]
        found = await hits(client, "get item")
        assert found[GET].get("available") is False
        error = error_of(await run(client, GET, {"sku": "SKU-1"}))
        assert error["code"] == "backend_unavailable" and error["retryable"] is True
        own_shop.start()  # the same port
        await until(gateway, lambda: not gateway.unavailable())
        assert (await hits(client, "get item"))[GET].get("available", True) is True
        result = await run(client, GET, {"sku": "SKU-1"})
        assert not result.is_error, text_of(result)


async def test_a_server_down_at_start_is_served_once_it_comes_up(own_shop: ShopServer) -> None:
    own_shop.stop()
    async with gateway_client(shop_config(own_shop.target, **FAST)) as (gateway, client):
        assert "shop" in gateway.backend_failures()
        own_shop.start()
        await until(gateway, lambda: GET in gateway.registry.snapshot.tools)
        assert not gateway.backend_failures()
        assert not (await run(client, GET, {"sku": "SKU-2"})).is_error


async def test_a_method_the_server_gains_is_picked_up_on_refresh(own_shop: ShopServer) -> None:
    async with gateway_client(shop_config(own_shop.target, **FAST)) as (gateway, client):
        assert PURGE not in gateway.registry.snapshot.tools
        own_shop.stop()
        own_shop.services = ("Inventory", "Admin")
        own_shop.start()
        await until(gateway, lambda: PURGE in gateway.registry.snapshot.tools)
        assert PURGE in await hits(client, "purge")
        result = await run(client, PURGE, {"confirm": True})
        assert result.structured_content["result"] == {"deleted": 3}


async def test_a_new_method_is_held_for_review_when_integrity_says_so(own_shop: ShopServer) -> None:
    config = shop_config(own_shop.target, **FAST, gw_integrity={"new_tools": "hold"})
    async with gateway_client(config) as (gateway, client):
        own_shop.stop()
        own_shop.services = ("Inventory", "Admin")
        own_shop.start()
        await until(gateway, lambda: PURGE in gateway.registry.snapshot.held)
        error = error_of(await run(client, PURGE, {"confirm": True}))
        assert error["code"] == "tool_held" and "aperture tools approve" in error["message"]
        assert PURGE not in gateway.registry.snapshot.tools and PURGE not in await hits(client, "purge")


async def test_a_call_that_finds_the_server_away_marks_it_down_until_a_call_gets_through(own_shop: ShopServer) -> None:
    config = shop_config(own_shop.target, refresh_interval=3600)  # no monitor in between: the calls decide
    async with gateway_client(config) as (gateway, client):
        own_shop.stop()
        error = error_of(await run(client, GET, {"sku": "SKU-1"}))
        assert error["code"] == "backend_unavailable"
        assert "shop" in gateway.unavailable()
        own_shop.start()
        with anyio.fail_after(10):  # the channel retries its connection with a backoff: calls fail fast meanwhile
            while (result := await run(client, GET, {"sku": "SKU-1"})).is_error:
                assert "shop" in gateway.unavailable(), text_of(result)
                await anyio.sleep(0.05)
        assert gateway.unavailable() == {}


async def test_an_unchanged_server_is_not_rediscovered_from_scratch(own_shop: ShopServer) -> None:
    async with gateway_client(shop_config(own_shop.target, **FAST)) as (gateway, _):
        backend: Any = gateway.registry.get("shop")
        checks = backend.refreshes
        for _ in range(3):
            await backend.check()
        assert backend.refreshes == checks  # the same files: the pool and tools stay as they are
