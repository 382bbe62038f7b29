"""`aperture serve --transport http` serves A2A beside MCP in one process: the card, the SDK client's calls, and
MCP calls on the same port; with `server.a2a.enabled: false`, only MCP; with `--transport a2a`, only A2A."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from mcp import Client

from tests.conftest import TEST_CONFIG
from tests.integration.conftest import APERTURE, free_port, serving_http, wait_for_port
from tests.surface.a2a_serving import a2a_client, artifact_data, data, final_task, text

pytestmark = pytest.mark.anyio


async def test_serve_over_http_answers_a2a_and_mcp_on_one_port() -> None:
    with serving_http(TEST_CONFIG) as mcp_url:
        base = mcp_url.removesuffix("/mcp")
        async with httpx.AsyncClient() as http:
            card = (await http.get(base + "/.well-known/agent-card.json")).json()
        assert card["name"] == "aperture-test" and card["supportedInterfaces"][0]["url"] == base + "/a2a"
        async with a2a_client(base, streaming=False) as client:
            found = await final_task(client, text("reverse a string unchanged echo"))
            assert any(hit["id"] == "faulty:echo" for hit in artifact_data(found)["tools"])
            ran = await final_task(client, data({"op": "run", "tool_id": "faulty:echo", "args": {"text": "hi"}}))
            assert ran.artifacts[0].parts[0].text == "hi"
        async with Client(mcp_url) as mcp:
            answer = await mcp.call_tool("run_tool", {"tool_id": "faulty:echo", "args": {"text": "also mcp"}})
            assert not answer.is_error


async def test_a2a_can_be_switched_off(tmp_path: Path) -> None:
    config = yaml.safe_load(TEST_CONFIG.read_text())
    for backend in config["backends"]:
        backend["path"] = str((TEST_CONFIG.parent / backend["path"]).resolve())
    config["server"]["a2a"] = {"enabled": False}
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving_http(path) as mcp_url:
        async with httpx.AsyncClient() as http:
            assert (await http.get(mcp_url.removesuffix("/mcp") + "/.well-known/agent-card.json")).status_code == 404


async def test_serve_with_transport_a2a_serves_a2a_alone() -> None:
    port = free_port()
    argv = [APERTURE, "serve", "--config", str(TEST_CONFIG), "--transport", "a2a", "--port", str(port)]
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            assert (await http.post(base + "/mcp", json={})).status_code == 404
            assert (await http.get(base + "/healthz")).status_code == 200
        async with a2a_client(base, streaming=False) as client:
            ran = await final_task(client, data({"op": "run", "tool_id": "faulty:echo", "args": {"text": "alone"}}))
        assert ran.artifacts[0].parts[0].text == "alone"
    finally:
        process.terminate()
        assert process.wait(10) == 0


_PROBE = """
import json, os, signal, sys, threading, time, urllib.request

from aperture.cli import main

BASE = "http://127.0.0.1:{port}"
HEAVY = ("a2a", "grpc", "google.protobuf", "culsans", "httpx")


def loaded():
    return sorted(name for name in HEAVY if name in sys.modules)


def probe():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(BASE + "/readyz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    before = loaded()
    card = json.loads(urllib.request.urlopen(BASE + "/.well-known/agent-card.json", timeout=30).read())
    print(json.dumps({{"before": before, "after": loaded(), "name": card["name"]}}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=probe, daemon=True).start()
sys.argv = ["aperture", "serve", "--config", {config!r}, "--transport", "http", "--port", "{port}"]
main()
"""


def test_serve_over_http_loads_the_a2a_sdk_on_the_first_a2a_request() -> None:
    """The SDK (and grpc, protobuf, httpx that it brings) is not imported by a gateway no A2A client has called:
    tens of MB of a gateway that serves only MCP."""
    port = free_port()
    code = _PROBE.format(port=port, config=str(TEST_CONFIG))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["name"] == "aperture-test"
    assert seen["before"] == [] and seen["after"] == ["a2a", "culsans", "google.protobuf", "grpc", "httpx"]
