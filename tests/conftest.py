"""Shared fixtures: the anyio backend, the test configuration, a running gateway and an MCP client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from aperture.config import Config, load_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
TEST_CONFIG = FIXTURES / "gateway.yaml"
EXAMPLE_CONFIG = ROOT / "examples" / "aperture.yaml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config() -> Config:
    return load_config(TEST_CONFIG)


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[Gateway]:
    async with Gateway(config) as gw:
        # The semantic index is built in a worker thread; tests rank with it, not with its BM25 stand-in.
        await anyio.to_thread.run_sync(gw.index.wait_ready, 60)
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    """The official MCP client, connected in memory to the gateway's MCP server."""
    async with Client(McpSurface(gateway).server) as c:
        yield c
