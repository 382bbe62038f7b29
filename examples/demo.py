"""End-to-end demo: start the gateway on the example catalog and drive it with the official MCP client.

Runs the gateway as a real subprocess, over stdio and then over streamable HTTP on 127.0.0.1, and walks
the three steps an agent takes: search_tools -> describe_tool -> run_tool, plus the errors a model sees;
then puts it in front of real MCP servers (examples/federation.yaml) and a gRPC service (examples/grpc.yaml),
mounts the build, test and test-environment engines of examples/engines/ (examples/engines.yaml), serves
toolsets to a client bound to one and to one that is not (examples/toolsets.yaml), and runs a recipe skill, an
instruction skill and run_chain (examples/compose.yaml, examples/skills/), and runs an agent's program through
execute_code in a bubblewrap sandbox (examples/code.yaml); then talks to the gateway as an A2A agent with the
official a2a-sdk client, and has a second gateway federate it as a `kind: a2a` backend.

    python examples/demo.py            # what `make demo` runs
    python examples/demo.py federation # only some parts: stdio, http, federation, grpc, engines, toolsets, compose,
                                       # code, a2a
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "aperture.yaml"
EVERYTHING = HERE.parent / "node_modules" / ".bin" / "mcp-server-everything"
APERTURE = Path(sys.executable).parent / "aperture"
console = Console()


def step(title: str) -> None:
    console.rule(f"[bold cyan]{title}")


def show_call(name: str, args: dict[str, Any], result: Any) -> None:
    console.print(f"[bold]→ {name}[/bold]({escape(json.dumps(args))})")
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


async def over_stdio() -> None:
    """An agent's session over stdio, the way a desktop client starts the gateway."""
    params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(CONFIG)], env=dict(os.environ))
    console.print(f"[dim]$ {APERTURE.name} serve --config {CONFIG.name}   (stdio, via the official MCP client)[/dim]")
    async with Client(params) as client:
        await agent_session(client)


async def over_http() -> None:
    """The same gateway as a streamable HTTP server on a free local port."""
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


def without_node(config: Path, scratch: Path) -> Path:
    """`config` without its npm backend, for a machine without Node.js: a copy in `scratch`, paths made absolute."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["backends"] = [b for b in document["backends"] if b["name"] != "everything"]
    for backend in document["backends"]:
        if "path" in backend:
            backend["path"] = str((config.parent / backend["path"]).resolve())
    copy = scratch / config.name
    copy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return copy


async def federation() -> None:
    """The same meta-tools in front of real MCP servers: mcp-server-time (PyPI) and server-everything (npm)."""
    config = HERE / "federation.yaml"
    step(f"Federation: upstream MCP servers behind the gateway ({config.name})")
    env = {**os.environ, "PATH": f"{APERTURE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    has_node = shutil.which("node", path=env["PATH"]) is not None and EVERYTHING.exists()
    with tempfile.TemporaryDirectory(prefix="aperture-demo-") as scratch:
        if not has_node:
            console.print(
                "[yellow]Node.js or its npm server is missing: federating without server-everything "
                "(install Node.js and npm, then run make demo again).[/yellow]"
            )
            config = without_node(config, Path(scratch))
        await federated_session(config, env, has_node)


async def federated_session(config: Path, env: dict[str, str], has_node: bool) -> None:
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
        if has_node:
            args = {"tool_id": "everything:get-sum", "args": {"a": 2, "b": "40"}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))


async def grpc_service() -> None:
    """A gRPC service (examples/grpc_server.py) federated next to the Python tools: its methods are tools."""
    config = HERE / "grpc.yaml"
    step(f"gRPC: a grpcio server's methods as tools ({config.name})")
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "grpc_server.py"), str(port)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo's gRPC server did not start")
            await anyio.sleep(0.1)
        env = {**os.environ, "DEMO_GRPC_PORT": str(port)}
        params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(config)], env=env)
        async with Client(params) as client:
            args: dict[str, Any] = {"query": "will it rain tomorrow in Lisbon", "limit": 2}
            found = await client.call_tool("search_tools", args)
            show_call("search_tools", args, found)
            forecast = "weather:weather.v1.Forecasts.GetForecast"
            args = {"tool_id": forecast, "detail_level": "schema"}
            show_call("describe_tool", args, await client.call_tool("describe_tool", args))
            args = {"tool_id": forecast, "args": {"city": "Lisbon", "unit": "CELSIUS"}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))
            console.print(
                "[dim]A server-streaming method: each message arrives as progress, the result is the list.[/dim]"
            )
            args = {"tool_id": "weather:weather.v1.Forecasts.StreamHourly", "args": {"city": "Lisbon", "hours": 3}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))
            args = {"tool_id": forecast, "args": {"city": "Lisbon", "unit": "KELVIN"}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))
    finally:
        server.terminate()
        server.wait(timeout=10)


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


async def toolsets() -> None:
    """Toolsets (examples/toolsets.yaml): named views of the catalog, each its own endpoint, bound to API keys."""
    config = HERE / "toolsets.yaml"
    port = free_port()
    base = f"http://127.0.0.1:{port}/mcp"
    step(f"Toolsets: named views of the catalog, at {base}/<toolset> ({config.name})")
    command = [str(APERTURE), "serve", "--config", str(config), "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(command)
    try:
        await wait_for_http(base, process)
        sessions = [
            ("alice, bound to nothing, at /mcp/dates", f"{base}/dates", "demo-alice-key"),
            ("text-bot, whose key is bound to toolset 'text', at /mcp", base, "demo-text-bot-key"),
        ]
        for title, url, key in sessions:
            console.print(f"[bold]{title}[/bold]")
            async with (
                httpx2.AsyncClient(headers={"x-api-key": key}, timeout=30) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                show_call("list_toolsets", {}, await client.call_tool("list_toolsets", {}))
                args: dict[str, Any] = {"query": "add days to a date or hash a text", "limit": 3}
                show_call("search_tools", args, await client.call_tool("search_tools", args))
                renamed = {"tool_id": "toolbox:shift_date", "args": {"start": "2026-12-05", "days": 30}}
                outside = {"tool_id": "toolbox:hash_text", "args": {"text": "x"}}
                for args in (renamed, outside):
                    show_call("run_tool", args, await client.call_tool("run_tool", args))
        async with httpx2.AsyncClient(headers={"x-api-key": "demo-alice-key"}) as http:
            answer = await http.post(f"{base}/dates2", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            console.print(f"[bold]→ POST {base}/dates2[/bold]: {answer.status_code} {answer.json()['message']}")
    finally:
        process.terminate()
        process.wait(timeout=10)


async def compose() -> None:
    """Skills (examples/compose.yaml, examples/skills/) and run_chain: several calls as one."""
    config = HERE / "compose.yaml"
    step(f"Skills and chains: several tool calls as one ({config.name}, skills/)")
    params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(config)], env=dict(os.environ))
    async with Client(params) as client:
        show_call("list_skills", {}, await client.call_tool("list_skills", {}))
        console.print(
            "[dim]A recipe skill is a tool: found by search, run with its inputs, every step as the caller.[/dim]"
        )
        note = {"title": "Hello, Skills!", "text": "Skills are tools. Recipes run steps.", "tags": ["How To"]}
        args: dict[str, Any] = {"tool_id": "skills:publish_note", "args": {**note, "checksum": True}}
        show_call("run_tool", args, await client.call_tool("run_tool", args))
        console.print(
            "[dim]An instruction skill: its SKILL.md body at describe_tool 'full', its files as resources.[/dim]"
        )
        args = {"query": "write release notes", "limit": 2}
        show_call("search_tools", args, await client.call_tool("search_tools", args))
        args = {"tool_id": "skills:release-notes", "detail_level": "full"}
        show_call("describe_tool", args, await client.call_tool("describe_tool", args))
        template = await client.read_resource("skill://release-notes/template.md")
        text = "".join(getattr(c, "text", "") for c in template.contents)
        console.print(Panel(text[:600], title="resources/read skill://release-notes/template.md", border_style="green"))
        console.print("[dim]run_chain: the steps in one round trip, each result passed on by a template.[/dim]")
        args = {
            "steps": [
                {"tool_id": "toolbox:slugify", "args": {"text": "Composition in one call"}},
                {
                    "tool_id": "toolbox:hash_text",
                    "args": {"text": "{{ previous.result }}", "algorithm": "sha256"},
                    "use_previous": True,
                },
            ],
            "include_backends": False,
        }
        show_call("run_chain", args, await client.call_tool("run_chain", args))
        args = {"steps": [{"tool_id": "toolbox:slugify", "args": {"text": "ok"}}, {"tool_id": "toolbox:nope"}]}
        show_call("run_chain", args, await client.call_tool("run_chain", args))


PROGRAM = """
titles = ['Code mode in Aperture', 'Sandboxes without keys', 'One round trip, not five']
slugs = [tools.run('toolbox:slugify', text=t)['result'] for t in titles]
stats = tools.search('descriptive statistics of numbers', limit=1)['tools'][0]['id']
summary = tools.run(stats, values=[len(s) for s in slugs])
print(f'{len(slugs)} slugs, summarised by {stats}')
{'slugs': slugs, 'mean_length': summary['mean'], 'longest': max(slugs, key=len)}
"""


async def code() -> None:
    """Code mode (examples/code.yaml): an agent's program calls tools in a sandbox, in each runtime."""
    from aperture.execution.code import runtime_named

    config = HERE / "code.yaml"
    step(f"Code mode: a program calls the tools in a sandbox ({config.name})")
    hostile = {
        "bwrap": "import socket\nsocket.create_connection(('127.0.0.1', 6379), timeout=1)",
        "wasm": "import js\njs.process.env",  # Node's globals are fenced off from Python
    }
    for runtime, attempt in hostile.items():
        problem = runtime_named(runtime).problem()
        if problem is not None:
            console.print(f"[yellow]Skipped the {runtime} runtime: it cannot run here ({problem}).[/yellow]")
            continue
        env = {**os.environ, "APERTURE_CODE_RUNTIME": runtime}
        params = StdioServerParameters(command=str(APERTURE), args=["serve", "--config", str(config)], env=env)
        async with Client(params) as client:
            console.print(
                f"[bold]runtime {runtime}[/bold][dim]: one execute_code call, search, runs and the sum.[/dim]"
            )
            args: dict[str, Any] = {"code": PROGRAM.strip()}
            show_call("execute_code", args, await client.call_tool("execute_code", args))
            console.print("[dim]A hostile program gets one sentence, and the gateway serves on.[/dim]")
            args = {"code": attempt}
            show_call("execute_code", args, await client.call_tool("execute_code", args))


async def a2a() -> None:
    """The gateway as an A2A agent (the official a2a-sdk client), then federated by a second gateway (kind: a2a)."""
    from a2a.client import ClientConfig, create_client
    from a2a.helpers import get_artifact_text, get_message_text, new_data_message, new_text_message
    from a2a.types import Role, SendMessageRequest, TaskState

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    step(f"A2A: the same gateway as an agent, at {base}/a2a (card at /.well-known/agent-card.json)")
    process = subprocess.Popen(
        [str(APERTURE), "serve", "--config", str(CONFIG), "--transport", "http", "--port", str(port)]
    )
    try:
        await wait_for_http(f"{base}/mcp", process)
        async with httpx2.AsyncClient() as http:
            card = (await http.get(f"{base}/.well-known/agent-card.json")).json()
        console.print(f"[bold]agent card[/bold]: {card['name']}, skills {', '.join(s['id'] for s in card['skills'])}")
        client = await create_client(base, client_config=ClientConfig(streaming=True))
        marathon = {"value": 42.195, "from_unit": "km", "to_unit": "mi"}
        asks = [
            new_text_message("convert kilometres to miles", role=Role.ROLE_USER),
            new_data_message({"op": "describe", "tool_id": "toolbox:convert_units", "detail_level": "summary"}),
            new_data_message({"op": "run", "tool_id": "toolbox:convert_units", "args": marathon}),
            new_data_message({"op": "run", "tool_id": "toolbox:convert_units", "args": {"value": 1}}),
        ]
        try:
            for message in asks:
                message.role = Role.ROLE_USER
                part = message.parts[0]
                shown = part.text if part.HasField("text") else json.dumps(get_data_parts_of(message))
                console.print(f"[bold]→ message[/bold]: {escape(shown)}")
                async for event in client.send_message(SendMessageRequest(message=message)):
                    if event.HasField("task"):
                        state = TaskState.Name(event.task.status.state)
                        console.print(f"  [dim]task {event.task.id[:8]}…: {state}[/dim]")
                    elif event.HasField("status_update"):
                        status = event.status_update.status
                        said = get_message_text(status.message) if status.HasField("message") else ""
                        console.print(f"  [dim]{TaskState.Name(status.state)} {escape(said[:400])}[/dim]")
                    elif event.HasField("artifact_update"):
                        artifact = event.artifact_update.artifact
                        text = get_artifact_text(artifact) or json.dumps(get_data_parts_of(artifact), indent=1)
                        console.print(Panel(escape(text[:800]), title="artifact", border_style="green"))
        finally:
            await client.close()
        await a2a_federated(base)
    finally:
        process.terminate()
        process.wait(timeout=10)


def get_data_parts_of(message: Any) -> Any:
    from a2a.helpers import get_data_parts

    return get_data_parts(message.parts)[0]


async def a2a_federated(agent_url: str) -> None:
    """A second gateway whose backend `peer` (kind: a2a) is the first gateway's agent card."""
    step("A2A as a backend: a second gateway federates the first one's skills (kind: a2a)")
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "peer.yaml"
        backend = {
            "name": "peer",
            "kind": "a2a",
            "card_url": f"{agent_url}/.well-known/agent-card.json",
            "allow_private_networks": True,  # the agent is on 127.0.0.1
        }
        config.write_text(yaml.safe_dump({"search": {"strategy": "bm25"}, "backends": [backend]}))
        console.print(f"[dim]{escape(yaml.safe_dump({'backends': [backend]}).strip())}[/dim]")
        argv = ["serve", "--config", str(config)]
        async with Client(StdioServerParameters(command=str(APERTURE), args=argv, env=dict(os.environ))) as client:
            listed = (await client.call_tool("list_tools", {})).structured_content["tools"]
            console.print(f"[bold]tools of the second gateway[/bold]: {', '.join(t['id'] for t in listed)}")
            inner = {"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "Agents all the way down"}}
            args = {"tool_id": "peer:run", "args": {"data": inner}}
            show_call("run_tool", args, await client.call_tool("run_tool", args))


PARTS = {
    "stdio": over_stdio,
    "http": over_http,
    "federation": federation,
    "grpc": grpc_service,
    "engines": engines,
    "toolsets": toolsets,
    "compose": compose,
    "code": code,
    "a2a": a2a,
}


async def main(parts: list[str]) -> None:
    console.print(Panel.fit(f"Aperture demo: gateway on [bold]{CONFIG.relative_to(HERE.parent)}[/bold]", style="bold"))
    for part in parts:
        await PARTS[part]()
    console.print(f"[bold green]Demo complete:[/bold green] {', '.join(parts)}.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Drive the gateway with the official MCP client, end to end.")
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"{', '.join(PARTS)} (default: all, in this order)")
    parts = parser.parse_args().parts or list(PARTS)
    if unknown := [part for part in parts if part not in PARTS]:
        parser.error(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    anyio.run(main, parts)
