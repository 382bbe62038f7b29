"""Toolsets on a real `aperture serve` process: each toolset is a virtual server at /mcp/{toolset} over
streamable HTTP, and `serve --toolset` serves one over stdio. Two API keys, one bound to a toolset; the
official MCP client reaches every path to a tool (search, its total and cursors, did-you-mean, describe,
run, list_tools, list_namespaces, the direct listing, resources and prompts) and none leads outside the
view. Bad configurations stop the start with the rule named; the gateway serves on after bad requests."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import FIXTURES, ROOT
from tests.integration.conftest import APERTURE, serving_http
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

BOUND_KEY = "bound-" + "b" * 30  # bound to toolset 'text'
FREE_KEY = "free-" + "f" * 30  # bound to nothing
TEXT_TOOLS = ["toolbox:regex_find", "toolbox:slugify", "toolbox:text_statistics"]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config(**changes: Any) -> dict[str, Any]:
    """The toolbox and two resource servers (`docs`, `secret`), three toolsets, two API keys."""
    server = str(FIXTURES / "resource_server.py")
    found: dict[str, Any] = {
        "search": {"strategy": "bm25"},
        "server": {"expose": "both"},
        "backends": [
            {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")},
            *({"name": n, "kind": "mcp", "command": [sys.executable, server, n]} for n in ("docs", "secret")),
        ],
        "toolsets": [
            {"name": "text", "description": "Text tools.", "include": {"tags": ["text"]}},
            {"name": "docs", "include": {"namespaces": ["docs"]}},
            {"name": "hashing", "include": {"tools": ["toolbox:hash_text"]}, "rename": {"toolbox:hash_text": "digest"}},
            # docs' resources and prompts without its tool: a toolset naming a namespace whole holds them.
            {"name": "notes", "include": {"namespaces": ["docs"]}, "exclude": {"tools": ["docs:*"]}},
        ],
        "ops": {
            "auth": {
                "enabled": True,
                "api_keys": [
                    {"name": "bound", "sha256": digest(BOUND_KEY), "toolsets": ["text"]},
                    {"name": "free", "sha256": digest(FREE_KEY)},
                ],
            }
        },
    }
    found.update(changes)
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One `aperture serve --transport http` for the module, its audit log in a file: (its MCP URL, the file)."""
    directory = tmp_path_factory.mktemp("toolsets")
    found = config()
    found["ops"]["auth"] |= {"audit": "file", "audit_file": str(directory / "audit.jsonl")}
    (directory / "aperture.yaml").write_text(yaml.safe_dump(found))
    with serving_http(directory / "aperture.yaml") as url:
        yield url, directory / "audit.jsonl"


@pytest.fixture(scope="module")
def gateway_url(served: tuple[str, Path]) -> str:
    """The module's gateway's MCP URL (`.../mcp`)."""
    return served[0]


@asynccontextmanager
async def connect(url: str, key: str | None = None) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"x-api-key": key} if key else {}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def call(client: Client, name: str, **args: Any) -> dict[str, Any]:
    answer = await client.call_tool(name, args)
    assert not answer.is_error, text_of(answer)
    content: dict[str, Any] = answer.structured_content
    return content


def ids(found: dict[str, Any]) -> list[str]:
    return sorted(hit["id"] for hit in found["tools"])


async def refused(awaitable: Any) -> str:
    with pytest.raises(MCPError) as caught:
        await awaitable
    return caught.value.error.message


async def assert_sees_only_the_text_toolset(client: Client) -> None:
    """Every path to a tool, for a caller confined to toolset 'text'."""
    found = await call(client, "search_tools", query="hash a text with sha256 or count words", limit=10)
    assert ids(found) and set(ids(found)) <= set(TEXT_TOOLS) and found["total"] <= 3
    listed = await call(client, "list_tools")
    assert ids(listed) == TEXT_TOOLS and listed["total"] == 3
    namespaces = (await call(client, "list_namespaces"))["namespaces"]
    assert [(n["namespace"], n["tool_count"]) for n in namespaces] == [("toolbox", 3)]
    for hidden in ("toolbox:hash_text", "toolbox:hash_txt", "docs:touch", "secret:touch", "hash_text"):
        for answer in (
            await client.call_tool("describe_tool", {"tool_id": hidden}),
            await run(client, hidden, {"text": "x"}),
            await client.call_tool("list_tool_examples", {"tool_id": hidden}),
        ):
            error = error_of(answer)
            assert error["code"] == "tool_not_found", (hidden, error)
            assert set(error["details"]["closest"]) <= set(TEXT_TOOLS), (hidden, error)
    slug = await run(client, "toolbox:slugify", {"text": "Hello Toolsets"})
    assert text_of(slug) == "hello-toolsets"
    direct = {t.name for t in (await client.list_tools()).tools}
    assert {"toolbox__slugify", "search_tools", "list_toolsets"} <= direct
    assert not {n for n in direct if n.startswith(("docs__", "secret__")) or n == "toolbox__hash_text"}
    assert error_of(await client.call_tool("toolbox__hash_text", {"text": "x"}))["code"] == "tool_not_found"
    # The resources and prompts of namespaces outside the view are hidden, and asking for them is as for unknown ones.
    assert (await client.list_resources()).resources == []
    assert (await client.list_resource_templates()).resource_templates == []
    assert (await client.list_prompts()).prompts == []
    for uri in ("docs://notes/public", "secret://notes/public"):
        assert "No upstream offers the resource" in await refused(client.read_resource(uri))
    assert (
        await refused(client.get_prompt("docs__summarize", {"topic": "x"}))
        == "No prompt 'docs__summarize'. Prompts: none."
    )


async def test_an_unbound_key_sees_the_named_view_at_its_path(gateway_url: str) -> None:
    async with connect(f"{gateway_url}/text", FREE_KEY) as client:
        await assert_sees_only_the_text_toolset(client)
        toolsets = (await call(client, "list_toolsets"))["toolsets"]
        assert [(t["id"], t["toolCount"]) for t in toolsets] == [
            ("toolset:text", 3),
            ("toolset:docs", 1),
            ("toolset:hashing", 1),
            ("toolset:notes", 0),
        ]


async def test_a_key_bound_to_a_toolset_sees_only_it_at_every_path(gateway_url: str) -> None:
    for path in ("", "/docs", "/hashing", "/no-such-toolset"):
        async with connect(gateway_url + path, BOUND_KEY) as client:
            await assert_sees_only_the_text_toolset(client)
            assert [t["name"] for t in (await call(client, "list_toolsets"))["toolsets"]] == ["text"]
            error = error_of(await client.call_tool("describe_toolset", {"toolset_id": "toolset:docs"}))
            assert (
                error["message"] == "No toolset 'toolset:docs'. Toolsets: toolset:text (list_toolsets describes them)."
            )


async def test_a_toolset_over_another_namespace_shows_that_namespaces_resources_and_prompts(gateway_url: str) -> None:
    async with connect(f"{gateway_url}/docs", FREE_KEY) as client:
        assert ids(await call(client, "list_tools")) == ["docs:touch"]
        uris = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        assert uris == ["docs://notes/private", "docs://notes/public"]
        read = await client.read_resource("docs://notes/public")
        assert read.contents and "No upstream offers" in await refused(client.read_resource("secret://notes/public"))
        assert [p.name for p in (await client.list_prompts()).prompts] == ["docs__summarize", "docs__brief"]
        assert "Prompts: docs__summarize, docs__brief" in await refused(client.get_prompt("secret__brief"))
    async with connect(gateway_url, FREE_KEY) as client:  # the whole catalog at /mcp
        assert (await call(client, "list_tools"))["total"] == 15
        assert len((await client.list_resources()).resources) == 4


async def test_a_toolset_naming_a_namespace_whole_shows_its_resources_and_prompts_without_tools(
    gateway_url: str,
) -> None:
    async with connect(f"{gateway_url}/notes", FREE_KEY) as client:
        assert (await call(client, "list_tools"))["total"] == 0
        uris = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        assert uris == ["docs://notes/private", "docs://notes/public"]
        assert (await client.read_resource("docs://notes/public")).contents
        assert "No upstream offers" in await refused(client.read_resource("secret://notes/public"))
        assert [p.name for p in (await client.list_prompts()).prompts] == ["docs__summarize", "docs__brief"]
        assert "No tool" in text_of(await client.call_tool("run_tool", {"tool_id": "docs:touch", "args": {}}))


async def test_a_cursor_made_in_one_toolset_does_not_page_another(gateway_url: str) -> None:
    async with connect(f"{gateway_url}/text", FREE_KEY) as client:
        cursor = (await call(client, "list_tools", limit=1))["nextCursor"]
        assert ids(await call(client, "list_tools", limit=1, cursor=cursor)) == ["toolbox:slugify"]
    for path in ("", "/docs"):
        async with connect(gateway_url + path, FREE_KEY) as client:
            error = error_of(await client.call_tool("list_tools", {"limit": 1, "cursor": cursor}))
            assert error["code"] == "invalid_cursor" and "different query or filter" in error["message"]


async def test_a_renamed_tool_is_run_by_its_new_id_in_its_toolset(gateway_url: str) -> None:
    async with connect(f"{gateway_url}/hashing", FREE_KEY) as client:
        assert ids(await call(client, "search_tools", query="hash text")) == ["toolbox:digest"]
        assert (await call(client, "describe_tool", tool_id="toolbox:digest"))["id"] == "toolbox:digest"
        ran = await run(client, "toolbox:digest", {"text": "abc"})
        assert text_of(ran).startswith("ba7816bf")  # sha256("abc")
        old = error_of(await run(client, "toolbox:hash_text", {"text": "abc"}))
        assert old["code"] == "tool_not_found" and old["details"]["closest"] == ["toolbox:digest"]
        assert "toolbox__digest" in {t.name for t in (await client.list_tools()).tools}


async def test_an_unknown_toolset_path_is_404_naming_only_toolsets_the_caller_may_use(gateway_url: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        anonymous = await http.post(f"{gateway_url}/nope", json=body)
        assert anonymous.status_code == 401 and "text" not in anonymous.text  # authentication comes first
        free = await http.post(f"{gateway_url}/nope", json=body, headers={"x-api-key": FREE_KEY})
        assert free.status_code == 404
        assert free.json()["message"] == (
            "No toolset 'nope' here. Toolsets: /mcp/text, /mcp/docs, /mcp/hashing, /mcp/notes. The whole catalog is at "
            "/mcp."
        )
        deeper = await http.post(f"{gateway_url}/text/more", json=body, headers={"x-api-key": FREE_KEY})
        assert deeper.status_code == 404
        meta = await http.get(gateway_url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp/text"))
        assert meta.json()["resource"] == f"{gateway_url}/text"
    async with connect(f"{gateway_url}/text", FREE_KEY) as client:  # still serving
        assert (await call(client, "list_tools"))["total"] == 3


async def test_serve_toolset_over_stdio_serves_only_that_view(tmp_path: Path) -> None:
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config(ops={})))
    params = StdioServerParameters(
        command=APERTURE, args=["serve", "--config", str(path), "--toolset", "text"], env=dict(os.environ)
    )
    async with Client(params) as client:
        await assert_sees_only_the_text_toolset(client)


def serve_fails(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [APERTURE, "serve", "--config", str(config_path), *args]
    return subprocess.run(argv, input="", capture_output=True, text=True, timeout=60, check=False)


def test_bad_toolset_configurations_stop_the_start_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "aperture.yaml"
    toolsets = [{"name": "text", "include": [{"tags": ["text"]}, {"namespaces": ["dosc"]}]}]
    path.write_text(yaml.safe_dump(config(toolsets=toolsets, ops={})))
    typo = serve_fails(path)
    assert typo.returncode == 1, typo.stderr
    assert "toolset 'text': include[1] (namespaces dosc) matches no tool" in " ".join(typo.stderr.split())
    assert "Traceback" not in typo.stderr
    bound = config()
    bound["ops"]["auth"]["api_keys"][0]["toolsets"] = ["txt"]
    path.write_text(yaml.safe_dump(bound))
    unknown = serve_fails(path)
    assert unknown.returncode == 2
    assert "is bound to toolset 'txt', which is not configured; toolsets: text, docs, hashing" in " ".join(
        unknown.stderr.split()
    )
    path.write_text(yaml.safe_dump(config(ops={})))
    missing = serve_fails(path, "--toolset", "nope")
    assert missing.returncode == 2 and "no toolset 'nope' in the configuration; toolsets: text, docs, hashing" in (
        " ".join(missing.stderr.split())
    )


async def test_a_toolset_of_a_backend_down_at_start_is_a_warning_and_the_gateway_serves(tmp_path: Path) -> None:
    path = tmp_path / "aperture.yaml"
    broken = {"name": "mail", "kind": "mcp", "command": [sys.executable, "-c", "raise SystemExit(3)"]}
    data = config(ops={}, toolsets=[{"name": "mail", "include": {"namespaces": ["mail"]}}])
    data["backends"].append(broken)
    path.write_text(yaml.safe_dump(data))
    with serving_http(path) as url:
        async with connect(f"{url}/mail") as client:
            assert (await call(client, "list_tools"))["total"] == 0
            found = await call(client, "search_tools", query="send mail")
            assert found["tools"] == [] and found["total"] == 0


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


async def modern_call(http: httpx2.AsyncClient, url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A 2026-07-28 `tools/call` (no session: the method and tool named in headers); its result."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": MODERN_META},
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": name,
        "x-api-key": FREE_KEY,
    }
    response = await http.post(url, json=message, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


async def test_a_2026_07_28_call_at_a_toolset_path_is_in_the_view_and_audited_with_it(
    served: tuple[str, Path],
) -> None:
    url, audit = served
    async with httpx2.AsyncClient(timeout=30) as http:
        inside = await modern_call(
            http, f"{url}/text", "run_tool", {"tool_id": "toolbox:slugify", "args": {"text": "A b"}}
        )
        assert not inside["isError"] and inside["structuredContent"]["result"] == {"result": "a-b"}
        outside = await modern_call(http, f"{url}/text", "run_tool", {"tool_id": "toolbox:hash_text", "args": {}})
        assert outside["isError"] and outside["structuredContent"]["error"]["code"] == "tool_not_found"
        direct = await modern_call(http, f"{url}/text", "toolbox__hash_text", {"text": "abc"})
        assert direct["isError"] and "ba7816bf" not in str(direct)
        renamed = await modern_call(http, f"{url}/hashing", "toolbox__digest", {"text": "abc"})
        assert not renamed["isError"] and str(renamed["structuredContent"]["result"]).startswith("ba7816bf")
        await modern_call(http, url, "run_tool", {"tool_id": "toolbox:slugify", "args": {"text": "c"}})

    def runs() -> list[tuple[str, str, str | None]]:
        lines = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        return [(r["target"], r["outcome"], r.get("toolset")) for r in lines if r["event"] == "run"]

    with anyio.fail_after(10):
        while len(runs()) < 3:
            await anyio.sleep(0.05)
    found = runs()
    assert ("toolbox:slugify", "ok", "text") in found  # the toolset the call came through is on its record
    assert ("toolbox:hash_text", "ok", "hashing") in found  # (under its catalog id, whatever the view calls it)
    assert ("toolbox:slugify", "ok", None) in found  # at /mcp: no toolset
