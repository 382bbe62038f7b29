"""What the audit log records besides runs: refused (401) requests, searches and descriptions, resource and prompt
reads, and session deletions, each with who, what and the outcome, never the arguments."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aperture.model import UnknownToolError
from aperture.ops.http import OpsHttpApp
from aperture.ops.identity import IDENTITY_KEY
from tests.conftest import FIXTURES
from tests.integration.conftest import serving_http
from tests.ops.conftest import ops_gateway

pytestmark = pytest.mark.anyio
KEY = "k-" + "e" * 30
SECRET = "hush-hush-7731"  # an argument value that must never reach the audit log


def auth(tmp_path: Path) -> dict[str, Any]:
    return {
        "enabled": True,
        "api_keys": [{"name": "ci", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "roles": ["dev"]}],
        "audit": "file",
        "audit_file": str(tmp_path / "audit.jsonl"),
        "audit_spool": {"directory": str(tmp_path / "spool")},
    }


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "audit.jsonl").read_text()
    assert SECRET not in text
    return [json.loads(line) for line in text.splitlines()]


async def test_searches_and_descriptions_are_recorded_without_their_arguments(tmp_path: Path) -> None:
    async with ops_gateway({"auth": auth(tmp_path)}) as gw:
        gw.search(f"look a word up {SECRET}")
        gw.describe("t:lookup")
        with pytest.raises(UnknownToolError):
            gw.describe("t:nope")
    assert [(r["event"], r["identity"], r["target"], r["outcome"]) for r in audit_lines(tmp_path)] == [
        ("search", "local", "", "ok"),
        ("describe", "local", "t:lookup", "ok"),
        ("describe", "local", "t:nope", "tool_not_found"),
    ]


async def test_refused_requests_and_session_deletions_are_recorded(tmp_path: Path) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(IDENTITY_KEY))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with ops_gateway({"auth": auth(tmp_path)}) as gw:
        transport = httpx2.ASGITransport(app=OpsHttpApp(inner, gw.ops, path="/mcp"))
        async with httpx2.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            assert (await client.post("/mcp")).status_code == 401
            assert (await client.post("/mcp", headers={"x-api-key": "wrong" + SECRET})).status_code == 401
            assert (await client.get("/readyz", headers={"x-api-key": "wrong"})).json() == {"status": "ready"}
            ended = await client.delete("/mcp", headers={"x-api-key": KEY, "mcp-session-id": "s-" + SECRET})
            assert ended.status_code == 200 and [i.name for i in seen] == ["ci"]
    digest = hashlib.sha256(("s-" + SECRET).encode()).hexdigest()[:16]
    records = audit_lines(tmp_path)
    assert [(r["event"], r["identity"], r["method"], r["target"], r["outcome"], r["http_method"]) for r in records] == [
        ("unauthorized", "anonymous", "none", "/mcp", "unauthorized", "POST"),
        ("unauthorized", "anonymous", "none", "/mcp", "unauthorized", "POST"),
        ("unauthorized", "anonymous", "none", "/readyz", "unauthorized", "GET"),
        ("session_delete", "ci", "api_key", f"session {digest}", "ok", "DELETE"),
    ]
    assert records[0]["reason"].startswith("Authentication required") and records[1]["reason"] == (
        "The API key is not valid."
    )
    assert all(r["client"] for r in records)


async def test_over_http_resource_and_prompt_reads_and_the_session_end_are_recorded(tmp_path: Path) -> None:
    # A real `aperture serve` over streamable HTTP, in front of a real stdio MCP server with resources and prompts.
    config = {
        "backends": [
            {"name": "conf", "kind": "mcp", "command": [sys.executable, str(FIXTURES / "conformance_server.py")]},
        ],
        "ops": {"auth": auth(tmp_path)},
    }
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving_http(path) as url:
        async with httpx2.AsyncClient(timeout=30) as anonymous:
            assert (await anonymous.post(url, json={})).status_code == 401
        async with (
            httpx2.AsyncClient(headers={"x-api-key": KEY}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            await client.call_tool("search_tools", {"query": f"simple prompt {SECRET}"})
            read = await client.read_resource("test://static-text")
            assert "static text resource" in str(read.contents[0])
            await client.get_prompt("conf__test_prompt_with_arguments", {"arg1": SECRET, "arg2": "b"})
            with pytest.raises(Exception, match="No prompt"):
                await client.get_prompt("conf__nope")
    rows = [(r["event"], r["identity"], r["target"], r["outcome"]) for r in audit_lines(tmp_path)]
    assert rows[0] == ("unauthorized", "anonymous", "/mcp", "unauthorized")
    assert rows[1:5] == [
        ("search", "ci", "", "ok"),
        ("resource_read", "ci", "test://static-text", "ok"),
        ("prompt_get", "ci", "conf__test_prompt_with_arguments", "ok"),
        ("prompt_get", "ci", "conf__nope", "error -32602"),
    ]
    assert rows[5][:2] == ("session_delete", "ci") and rows[5][3] == "ok", rows
