"""Real gateway processes: `aperture serve` over stdio and over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import TEST_CONFIG

APERTURE = str(Path(sys.executable).parent / "aperture")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stdio_params(config: Path = TEST_CONFIG) -> StdioServerParameters:
    return StdioServerParameters(command=APERTURE, args=["serve", "--config", str(config)], env=dict(os.environ))


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


@contextmanager
def serving_http(config: Path) -> Iterator[str]:
    """`aperture serve --transport http` on `config` at a free port; yields its MCP URL, stops it after."""
    port = free_port()
    argv = [APERTURE, "serve", "--config", str(config), "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def http_gateway() -> Iterator[str]:
    """One HTTP gateway process for the module; yields its MCP URL."""
    port = free_port()
    process = subprocess.Popen(
        [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", "http", "--port", str(port)],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"gateway exited {process.returncode}: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            httpx2.get(url, timeout=1)
            break
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("gateway did not start within 30 s") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()


@pytest.fixture(params=["stdio", "http"])
async def real_client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """The official MCP client on a real gateway process, once per transport."""
    target: StdioServerParameters | str
    target = stdio_params() if request.param == "stdio" else request.getfixturevalue("http_gateway")
    async with Client(target) as client:
        yield client
