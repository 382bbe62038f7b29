"""The demo's gRPC service (examples/grpc_server.py) behind the gateway as examples/grpc.yaml configures it."""

from __future__ import annotations

import socket

import pytest
from mcp import Client

from aperture.config import load_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from grpc_server import serve
from tests.conftest import ROOT
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio


async def test_the_example_grpc_service_is_federated_next_to_the_python_tools() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = serve(port)
    try:
        config = load_config(ROOT / "examples" / "grpc.yaml", env={"DEMO_GRPC_PORT": str(port)})
        config = config.model_copy(update={"search": config.search.model_copy(update={"strategy": "bm25"})})
        async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
            assert {"toolbox", "weather"} <= set(gateway.registry.names())
            found = await client.call_tool("search_tools", {"query": "weather forecast for a city", "limit": 1})
            assert found.structured_content["tools"][0]["id"] == "weather:weather.v1.Forecasts.GetForecast"
            result = await run(
                client, "weather:weather.v1.Forecasts.GetForecast", {"city": "Lisbon", "unit": "FAHRENHEIT"}
            )
            assert not result.is_error, text_of(result)
            assert result.structured_content["result"]["unit"] == "FAHRENHEIT"
            hourly = await run(client, "weather:weather.v1.Forecasts.StreamHourly", {"city": "Porto", "hours": 4})
            assert hourly.structured_content["result"]["count"] == 4
    finally:
        server.stop(grace=None)
