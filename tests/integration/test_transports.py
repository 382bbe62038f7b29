"""A real `aperture serve` process, over stdio and streamable HTTP, driven as an agent would drive it.

Every bad input gets a clear error result, and the server still answers afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from aperture.surface.mcp.transport import exposure_warning
from tests.conftest import FIXTURES, TEST_CONFIG
from tests.integration.conftest import APERTURE, free_port, stdio_params, wait_for_port
from tests.mcp_helpers import META_NAMES, initialize_request, run, text_of

pytestmark = pytest.mark.anyio


async def still_serving(client: Client) -> None:
    result = await run(client, "toolbox:calculate", {"expression": "2 + 2"})
    assert not result.is_error and text_of(result) == "4.0"


async def test_session_lists_only_meta_tools_and_runs_search_describe_run(real_client: Client) -> None:
    listing = await real_client.list_tools()
    assert {t.name for t in listing.tools} == META_NAMES
    found = await real_client.call_tool("search_tools", {"query": "days between two dates"})
    tool_id = found.structured_content["tools"][0]["id"]
    assert tool_id == "toolbox:date_difference"
    doc = await real_client.call_tool("describe_tool", {"tool_id": tool_id})
    assert set(doc.structured_content["input_schema"]["required"]) == {"start", "end"}
    ran = await run(real_client, tool_id, {"start": "2024-01-01", "end": "2025-01-01"})
    assert ran.structured_content["result"]["days"] == 366


BAD_CALLS: list[tuple[str, Any, Any, str]] = [
    ("unknown-id", "toolbox:calc", {}, "tool_not_found"),
    ("four-parts", "a:b:c:d", {}, "invalid_tool_id"),
    ("empty-namespace", ":x", {}, "invalid_tool_id"),
    ("empty-id", "", {}, "invalid_tool_id"),
    ("10kB-id", "n:" + "x" * 10_000, {}, "invalid_tool_id"),
    ("args-not-object", "toolbox:calculate", [1, 2, 3], "validation_input"),
    ("missing-argument", "toolbox:calculate", {}, "validation_input"),
    ("extra-argument", "toolbox:calculate", {"expression": "1", "verbose": True}, "validation_input"),
    ("wrong-type", "toolbox:calculate", {"expression": "1", "precision": "high"}, "validation_input"),
    ("tool-raises", "faulty:explode", {}, "execution_failed"),
    ("tool-hangs", "faulty:hang", {}, "timeout"),
    ("unserialisable", "faulty:unserialisable", {}, "execution_failed"),
]


@pytest.mark.parametrize(("tool_id", "args", "code"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
async def test_bad_input_gets_a_clear_error_and_the_server_keeps_serving(
    real_client: Client, tool_id: str, args: Any, code: str
) -> None:
    with anyio.fail_after(10):
        result = await run(real_client, tool_id, args)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == code
    assert 20 < len(error["message"]) < 3000
    assert text_of(result) == error["message"]
    await still_serving(real_client)


async def test_megabyte_argument_round_trips(real_client: Client) -> None:
    big = "y" * 1_000_000
    with anyio.fail_after(20):
        result = await run(real_client, "faulty:echo", {"text": big})
    assert not result.is_error and text_of(result) == big
    await still_serving(real_client)


async def test_malformed_json_rpc_over_stdio_gets_errors_and_the_server_keeps_serving() -> None:
    params = stdio_params()
    async with await anyio.open_process([params.command, *params.args]) as process:
        assert process.stdin is not None and process.stdout is not None
        lines = process.stdout

        async def send(payload: str) -> None:
            assert process.stdin is not None
            await process.stdin.send((payload + "\n").encode())

        buffer = b""

        async def receive() -> dict[str, Any]:
            nonlocal buffer
            with anyio.fail_after(10):
                while b"\n" not in buffer:
                    buffer += await lines.receive()
            line, buffer = buffer.split(b"\n", 1)
            message: dict[str, Any] = json.loads(line)
            return message

        await send("{this is not json")
        assert (await receive())["error"]["code"] == -32700
        await send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "not an object"}))
        error = await receive()
        assert error["id"] == 1 and error["error"]["code"] in (-32600, -32602)
        await send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "no/such/method", "params": {}}))
        assert (await receive())["error"]["code"] == -32601
        await send(json.dumps(initialize_request("2025-06-18", request_id=3)))
        assert (await receive())["result"]["serverInfo"]["name"] == "aperture-test"
        await send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        await send(json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}))
        tools = (await receive())["result"]["tools"]
        assert {t["name"] for t in tools} == META_NAMES
        await process.stdin.aclose()
        with anyio.fail_after(10):
            assert await process.wait() == 0


async def test_http_sessions_are_told_the_tool_list_can_change(http_gateway: str) -> None:
    async with Client(http_gateway, mode="legacy") as client:
        capabilities = client.server_capabilities
        assert capabilities is not None and capabilities.tools is not None and capabilities.tools.list_changed


async def test_malformed_json_rpc_over_http_gets_an_error_and_the_server_keeps_serving(http_gateway: str) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        garbage = await http.post(http_gateway, content=b"{oops", headers=headers)
        assert 400 <= garbage.status_code < 500
        assert garbage.json()["error"]["code"] == -32700
        wrong = await http.post(http_gateway, content=b'{"jsonrpc": "2.0", "id": 1}', headers=headers)
        assert 400 <= wrong.status_code < 500
    async with Client(http_gateway) as client:
        await still_serving(client)


async def test_stdio_server_exits_cleanly_when_the_client_leaves() -> None:
    params = stdio_params()
    async with await anyio.open_process([params.command, *params.args]) as process:
        assert process.stdin is not None
        await process.stdin.aclose()
        with anyio.fail_after(10):
            assert await process.wait() == 0


async def test_bad_configuration_is_reported_with_file_and_key(tmp_path: Any) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("backends:\n  - name: x\n    kind: python\n    modul: nope\n")
    result = await anyio.run_process([APERTURE, "serve", "--config", str(config)], check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "bad.yaml" in stderr and "backends[0].modul: unknown key" in stderr
    assert "backends[0].module: Field required" in stderr


async def test_serve_accepts_a_claude_desktop_mcp_servers_file(tmp_path: Path) -> None:
    servers = {
        "mcpServers": {
            "fixture": {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py")]},
            "time": {"command": str(Path(sys.executable).parent / "mcp-server-time")},
        }
    }
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps(servers))
    async with Client(stdio_params(config)) as client:
        assert text_of(await run(client, "fixture:echo", {"text": "via json"})) == "via json"
        namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
        assert {n["namespace"] for n in namespaces} == {"fixture", "time"}


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_sigterm_stops_the_gateway_cleanly(tmp_path: Path, transport: str) -> None:
    port = free_port()
    argv = [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", transport, "--port", str(port)]
    async with await anyio.open_process(argv) as process:
        if transport == "http":
            await anyio.to_thread.run_sync(wait_for_port, port)
        else:
            # Serving once it answers (a SIGTERM while Python still imports would just kill it); then stdin
            # stays open and nothing more arrives.
            assert process.stdin is not None and process.stdout is not None
            await process.stdin.send((json.dumps(initialize_request()) + "\n").encode())
            with anyio.fail_after(60):
                assert b'"id":1' in (await process.stdout.receive()).replace(b" ", b"")
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            code = await process.wait()
        assert process.stderr is not None
        stderr = ""
        if code:
            with contextlib.suppress(anyio.EndOfStream):
                stderr = (await process.stderr.receive(1 << 20)).decode()
    assert code == 0, f"exit code {code}: {stderr[-3000:]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signalled_gateway_stops_its_upstreams(tmp_path: Path, sig: signal.Signals) -> None:
    # --linger: these upstreams do not exit when their stdin closes, so only the gateway can stop them.
    upstream = {"command": sys.executable, "args": [str(FIXTURES / "upstream_server.py"), "--linger"]}
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"a": upstream, "b": upstream}}))
    async with await anyio.open_process([APERTURE, "serve", "--config", str(config)]) as process:
        with anyio.fail_after(20):
            while len(children_of(process.pid)) < 2:
                await anyio.sleep(0.05)
        upstreams = children_of(process.pid)
        await anyio.sleep(0.5)  # let both finish initializing
        process.send_signal(sig)
        with anyio.fail_after(15):
            await process.wait()
    try:
        with anyio.fail_after(5):
            while any(alive(pid) for pid in upstreams):
                await anyio.sleep(0.05)
    finally:
        for pid in upstreams:  # never leave a test's processes behind, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_taken_port_is_one_error_line_and_never_announced() -> None:
    # Bind first, announce after: no "MCP at ..." for a port the gateway does not have, and no traceback.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        argv = [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", "http", "--port", str(port)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and "MCP at" not in done.stderr
    message = " ".join(lines)
    assert f"Port {port} on 127.0.0.1 is already in use" in message and "--port" in message


@pytest.mark.parametrize(
    ("host", "warned"),
    [("192.0.2.1", True), ("0.0.0.0", True), ("::", True), ("localhost", False), ("127.0.0.1", False), ("::1", False)],
)
def test_an_address_other_machines_reach_without_auth_is_warned_about(host: str, warned: bool) -> None:
    warning = exposure_warning(host, auth_enabled=False)
    assert (warning is not None) is warned
    assert exposure_warning(host, auth_enabled=True) is None
    if warning is not None:
        assert f"serving on {host} without authentication" in warning and "ops.auth" in warning


def test_serve_warns_before_it_binds_a_reachable_address_without_auth() -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the gateway warns, then cannot bind, and stops with one
    # line. Nothing listens beyond loopback, and the warning comes before the bind, as it would on a server.
    argv = [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", "http", "--host", "192.0.2.1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-2].startswith("warning: serving on 192.0.2.1 without authentication")
    assert lines[-1].startswith("error: Cannot listen on 192.0.2.1:8080")
