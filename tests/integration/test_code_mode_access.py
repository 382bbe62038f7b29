"""execute_code on a real `aperture serve --transport http` with API keys: a program's bridged `tools.search`,
`tools.describe` and `tools.run` see exactly what its caller sees (a tool outside the caller's toolset is the
unknown-tool error, one outside its rules is unknown to describe and `forbidden` to run, as for run_tool; search
never lists either), an unrestricted caller reaches it, and a
caller whose roles code mode does not allow neither lists execute_code nor can call it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aperture.execution.code import BwrapRuntime, runtime_named
from tests.conftest import ROOT
from tests.integration.conftest import serving_http
from tests.mcp_helpers import error_of, run

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(BwrapRuntime().problem() is not None, reason="no bubblewrap here (make test installs it)"),
]

FULL_KEY = "full-" + "f" * 30  # roles coder + hasher: everything
RULED_KEY = "ruled-" + "r" * 30  # role coder: toolbox:hash_text is outside its rules
BOUND_KEY = "bound-" + "b" * 30  # role coder, bound to toolset 'text'
VIEWER_KEY = "viewer-" + "v" * 30  # role viewer: may not use code mode
HIDDEN = "toolbox:hash_text"
TEXT_TOOLS = {"toolbox:regex_find", "toolbox:slugify", "toolbox:text_statistics"}
QUERY = "hash a text with sha256 or make a slug"


def key(name: str, secret: str, roles: list[str], toolsets: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "roles": roles}
    if toolsets:
        entry["toolsets"] = toolsets
    return entry


@pytest.fixture(scope="module", params=["bwrap", "wasm"])
def gateway_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    runtime: str = request.param  # every test in both runtimes: the bridge is the same fence in each
    if (problem := runtime_named(runtime).problem()) is not None:
        pytest.skip(f"the {runtime} runtime cannot run here: {problem}")
    config = {
        "search": {"strategy": "bm25"},
        "backends": [{"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")}],
        "toolsets": [{"name": "text", "include": {"tags": ["text"]}}],
        "execution": {
            "code": {"enabled": True, "runtime": runtime, "roles": ["coder"], "timeout_ms": 5000, "pool_size": 2}
        },
        "ops": {
            "auth": {
                "enabled": True,
                "api_keys": [
                    key("full", FULL_KEY, ["coder", "hasher"]),
                    key("ruled", RULED_KEY, ["coder"]),
                    key("bound", BOUND_KEY, ["coder"], ["text"]),
                    key("viewer", VIEWER_KEY, ["viewer"]),
                ],
                "rules": [{"tools": HIDDEN, "roles": ["hasher"]}],
            }
        },
    }
    path = tmp_path_factory.mktemp("code-access") / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving_http(path) as url:
        yield url


@asynccontextmanager
async def connect(url: str, secret: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"x-api-key": secret}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def execute(client: Client, code: str) -> dict[str, Any]:
    answer = await client.call_tool("execute_code", {"code": code})
    assert not answer.is_error, answer.content
    body: dict[str, Any] = json.loads(answer.content[0].text)  # type: ignore[union-attr]
    return body


PROBE = f"""
out = {{'search': [t['id'] for t in tools.search({QUERY!r}, 50)['tools']]}}
calls = [('describe', lambda: tools.describe({HIDDEN!r})), ('run', lambda: tools.run({HIDDEN!r}, text='abc'))]
for name, call in calls:
    try:
        out[name] = {{'ok': call()}}
    except ToolError as e:
        out[name] = {{'error': str(e)}}
out
"""


async def what_the_caller_sees(client: Client) -> dict[str, Any]:
    """The same three questions as a program asks them, asked through the meta-tools."""
    found = (await client.call_tool("search_tools", {"query": QUERY, "limit": 50})).structured_content
    seen: dict[str, Any] = {"search": [t["id"] for t in found["tools"]]}
    for name, answer in [
        ("describe", await client.call_tool("describe_tool", {"tool_id": HIDDEN})),
        ("run", await run(client, HIDDEN, {"text": "abc"})),
    ]:
        seen[name] = {"error": error_of(answer)["message"]} if answer.is_error else {"ok": answer.structured_content}
    return seen


@pytest.mark.parametrize("secret", [RULED_KEY, BOUND_KEY], ids=["outside-its-rules", "outside-its-toolset"])
async def test_a_program_sees_exactly_what_its_restricted_caller_sees(gateway_url: str, secret: str) -> None:
    async with connect(gateway_url, secret) as client:
        program = (await execute(client, PROBE))["value"]
        seen = await what_the_caller_sees(client)
    assert HIDDEN not in program["search"] and program["search"] == seen["search"]
    if secret == BOUND_KEY:
        assert set(program["search"]) <= TEXT_TOOLS
    assert program["describe"] == seen["describe"] == {"error": f"No tool '{HIDDEN}'. Use search_tools to find a tool."}
    assert program["run"] == seen["run"]
    if secret == RULED_KEY:  # running a known tool the rules forbid answers `forbidden`, as run_tool does
        assert program["run"]["error"].startswith(f"Caller 'ruled' may not use tool '{HIDDEN}'")
    else:
        assert program["run"]["error"].startswith(f"No tool '{HIDDEN}'")


async def test_an_unrestricted_caller_reaches_the_tool_through_the_bridge(gateway_url: str) -> None:
    async with connect(gateway_url, FULL_KEY) as client:
        body = await execute(client, PROBE)
    program = body["value"]
    assert HIDDEN in program["search"]
    assert program["describe"]["ok"]["id"] == HIDDEN
    digest = hashlib.sha256(b"abc").hexdigest()
    assert digest in json.dumps(program["run"]["ok"])
    assert [(c["id"], c["outcome"]) for c in body["toolCalls"]][1:] == [(HIDDEN, "ok"), (HIDDEN, "ok")]


async def test_a_caller_without_a_code_role_neither_lists_nor_calls_execute_code(gateway_url: str) -> None:
    async with connect(gateway_url, VIEWER_KEY) as client:
        assert "execute_code" not in {t.name for t in (await client.list_tools()).tools}
        refused = error_of(await client.call_tool("execute_code", {"code": "1 + 1"}))
        unknown = error_of(await client.call_tool("execute_codf", {"code": "1 + 1"}))
        assert refused["code"] == unknown["code"] == "tool_not_found"
        assert refused["message"].startswith("No tool 'execute_code'")
        assert refused["message"].replace("execute_code", "X") == unknown["message"].replace("execute_codf", "X")
        assert not (await run(client, "toolbox:slugify", {"text": "Still Serving"})).is_error
    async with connect(gateway_url, RULED_KEY) as client:
        assert "execute_code" in {t.name for t in (await client.list_tools()).tools}
        assert (await execute(client, "1 + 1"))["value"] == 2
