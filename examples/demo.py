"""End-to-end demo: start the gateway on the example catalog and drive it with the official MCP client.

Runs the gateway as a real subprocess, over stdio and then over streamable HTTP on 127.0.0.1, and walks
the three steps an agent takes: search_tools -> describe_tool -> run_tool, plus the errors a model sees;
then puts it in front of real MCP servers (examples/federation.yaml), and finally mounts the build, test and
test-environment engines of examples/engines/ (examples/engines.yaml).

    python examples/demo.py            # what `make demo` runs
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "aperture.yaml"
APERTURE = Path(sys.executable).parent / "aperture"
console = Console()


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def show_call(name: str, args: dict[str, Any], result: Any) -> None:
    console.print(f"[bold]→ {name}[/bold]({json.dumps(args)})")
    text = "\n".join(getattr(block, "text", f"<{block.type}>") for block in result.content)
    try:
        body = json.dumps(json.loads(text), indent=2)
    except ValueError:
        body = text
    style = "red" if result.is_error else "green"
    console.print(Panel(body[:1500], title="isError" if result.is_error else "result", border_style=style))


async def agent_session(client: Client) -> None:
    """What an agent does: list, search, describe, run; and what it sees when it gets things wrong."""
    step("tools/list: the agent sees only the meta-tools")
    listing = await client.list_tools()
    table = Table("meta-tool", "description")
    for tool in listing.tools:
        table.add_row(tool.name, (tool.description or "")[:90])
    console.print(table)

    step("1. search_tools: find a tool for the task")
    args: dict[str, Any] = {"query": "convert kilometres to miles", "limit": 3}
    found = await client.call_tool("search_tools", args)
    show_call("search_tools", args, found)
    best = found.structured_content["tools"][0]["id"]

    step("2. describe_tool: learn its input schema")
    args = {"tool_id": best, "detail_level": "schema"}
    show_call("describe_tool", args, await client.call_tool("describe_tool", args))

    step("3. run_tool: call it (the string '42.195' is coerced to a number)")
    args = {"tool_id": best, "args": {"value": "42.195", "from_unit": "km", "to_unit": "mi"}}
    show_call("run_tool", args, await client.call_tool("run_tool", args))

    step("Mistakes get answers a model can act on")
    args = {"tool_id": best, "args": {"val": 3, "from_unit": "km", "to_unit": "parsec"}}
    show_call("run_tool", args, await client.call_tool("run_tool", args))
    args = {"tool_id": "toolbox:calc", "args": {"expression": "1+1"}}
    show_call("run_tool", args, await client.call_tool("run_tool", args))

    step("More tools from the catalog")
    for tool_id, tool_args in [
        ("toolbox:calculate", {"expression": "1000 * (1 + 0.05) ** 10", "precision": 2}),
        ("toolbox:date_difference", {"start": "2026-01-01", "end": "2026-12-25"}),
        ("toolbox:hash_text", {"text": "hello", "algorithm": "sha256"}),
    ]:
        args = {"tool_id": tool_id, "args": tool_args}
        show_call("run_tool", args, await client.call_tool("run_tool", args))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx2.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with code {process.returncode}")
            try:
                await http.get(url)
                return
            except httpx2.TransportError:
                await anyio.sleep(0.1)
    raise RuntimeError(f"the gateway did not answer on {url} within {timeout:g} s")


async def main() -> None:
    console.print(Panel.fit(f"Aperture demo: gateway on [bold]{CONFIG.relative_to(Path.cwd())}[/bold]", style="bold"))
    params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(CONFIG)], env=dict(os.environ))
    console.print(f"[dim]$ {APERTURE.name} serve --config {CONFIG.name}   (stdio, via the official MCP client)[/dim]")
    async with Client(params) as client:
        await agent_session(client)

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    step(f"The same gateway over streamable HTTP at {url}")
    process = subprocess.Popen(
        [str(APERTURE), "serve", "--config", str(CONFIG), "--transport", "http", "--port", str(port)]
    )
    try:
        await wait_for_http(url, process)
        async with Client(url) as client:
            args = {"query": "statistics of a list of numbers", "limit": 1}
            found = await client.call_tool("search_tools", args)
            show_call("search_tools", args, found)
            args = {"tool_id": found.structured_content["tools"][0]["id"], "args": {"values": [3, 1, 4, 1, 5, 9, 2, 6]}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))
    finally:
        process.terminate()
        process.wait(timeout=10)
    await federation()
    await engines()
    console.print(
        "[bold green]Demo complete:[/bold green] search, describe and run over stdio, HTTP, federated, and engines."
    )


async def federation() -> None:
    """The same meta-tools in front of real MCP servers: mcp-server-time (PyPI) and server-everything (npm)."""
    config = HERE / "federation.yaml"
    step(f"Federation: upstream MCP servers behind the gateway ({config.name})")
    env = {**os.environ, "PATH": f"{APERTURE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(config)], env=env)
    async with Client(params) as client:
        namespaces = await client.call_tool("list_namespaces", {})
        table = Table("namespace", "tools", "kind", "healthy")
        for row in namespaces.structured_content["namespaces"]:
            table.add_row(row["namespace"], str(row["tool_count"]), row["backend_kind"], str(row["healthy"]))
        console.print(table)
        args: dict[str, Any] = {"query": "current time in a timezone", "limit": 2}
        show_call("search_tools", args, await client.call_tool("search_tools", args))
        args = {"tool_id": "time:get_current_time", "args": {"timezone": "Asia/Tokyo"}}
        show_call("run_tool", args, await client.call_tool("run_tool", args))
        args = {"tool_id": "everything:get-sum", "args": {"a": 2, "b": "40"}}
        show_call("run_tool", args, await client.call_tool("run_tool", args))


async def engines() -> None:
    """Plain functions as build / test / test-environment tools: a wheel, a pytest run, a git repository."""
    config = HERE / "engines.yaml"
    step(f"Engines: build, test and provision through the gateway ({config.name})")
    version = subprocess.run(
        [sys.executable, "-m", "wheel_builder", "--version"], cwd=HERE / "engines", capture_output=True, text=True
    )
    console.print(
        f"[dim]$ python -m wheel_builder --version   (stand-alone: also --mcp, --list)[/dim]\n{version.stdout}"
    )
    params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(config)], env=dict(os.environ))
    project = HERE / "engines" / "sample_project"
    with tempfile.TemporaryDirectory(prefix="aperture-demo-") as scratch:
        async with Client(params) as client:
            args: dict[str, Any] = {"query": "build a python wheel", "limit": 3}
            show_call("search_tools", args, await client.call_tool("search_tools", args))
            calls: list[tuple[str, dict[str, Any]]] = [
                (
                    "ci:wheel-builder.build",
                    {
                        "name": "sample",
                        "engine": "wheel-builder",
                        "src": str(project),
                        "dest": f"{scratch}/dist",
                        "tmpDir": scratch,
                    },
                ),
                (
                    "ci:pytest-runner.run",
                    {
                        "id": "demo-1",
                        "stage": "unit",
                        "name": "sample",
                        "rootDir": str(project),
                        "tmpDir": scratch,
                        "env": {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
                    },
                ),
                (
                    "ci:git-testenv.create",
                    {
                        "testID": "demo",
                        "stage": "e2e",
                        "tmpDir": scratch,
                        "spec": {
                            "commits": [
                                {"message": "first", "files": {"a.txt": "1"}},
                                {"message": "second", "files": {"b.txt": "2"}},
                            ]
                        },
                    },
                ),
                ("ci:git-testenv.delete", {"testID": "demo", "tmpDir": scratch}),
                ("ci:git-testenv.delete", {"testID": "demo", "tmpDir": scratch}),  # again: already gone is fine
                ("ci:wheel-builder.build", {"name": "sample", "engine": "wheel-builder", "src": "/no/such/project"}),
            ]
            for tool_id, tool_args in calls:
                args = {"tool_id": tool_id, "args": tool_args}
                show_call("run_tool", args, await client.call_tool("run_tool", args))


if __name__ == "__main__":
    anyio.run(main)
