"""`aperture serve` over stdio with a grpc backend, as a desktop client starts it: the kind loads from the file,
the gateway process discovers the shop by reflection, and the official client runs a unary and a streaming method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grpc_shop import ShopServer
from mcp import Client

from tests.integration.conftest import stdio_params
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio


async def test_aperture_serve_federates_a_grpc_server_over_stdio(tmp_path: Path) -> None:
    server = ShopServer().start()
    try:
        config = tmp_path / "aperture.json"
        backend = {"name": "shop", "kind": "grpc", "target": server.target, "timeout": 5}
        config.write_text(json.dumps({"backends": [backend], "search": {"strategy": "bm25"}}))
        async with Client(stdio_params(config)) as client:
            found = await client.call_tool("search_tools", {"query": "get item", "limit": 1})
            assert found.structured_content["tools"][0]["id"] == "shop:shop.v1.Inventory.GetItem"
            result = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-3"})
            assert not result.is_error, text_of(result)
            assert result.structured_content["result"]["name"] == "teapot"
            stream = await run(client, "shop:shop.v1.Inventory.SearchItems", {"query": "kettle", "limit": 1})
            assert stream.structured_content["result"]["count"] == 1
    finally:
        server.stop()
