"""Auth rules leave no trace of what a caller may not see: not in a "did you mean", not in list_namespaces,
not in a search's reasons, not in tools/list; through the Gateway API and the official MCP client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aperture.execution import CallContext
from aperture.model import InvalidCursorError, UnknownToolError
from aperture.ops.identity import IDENTITY_KEY, Identity, current_identity
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES
from tests.execution.test_registry import FakeBackend
from tests.integration.conftest import serving_http
from tests.mcp_helpers import error_of, run, text_of
from tests.ops.conftest import ops_gateway

pytestmark = pytest.mark.anyio

RULES = [{"tools": "admin:*", "roles": ["admin"]}, {"tools": "t:append", "scopes": ["write"]}]
OPS: dict[str, Any] = {"auth": {"enabled": True, "rules": RULES, "local_roles": []}}
DEV = Identity(name="ci", method="api_key", roles=frozenset({"dev"}))
ADMIN = Identity(name="root", method="jwt", roles=frozenset({"admin"}), scopes=frozenset({"write"}))
HIDDEN = ("admin:reset", "t:append")
# Each miss names a forbidden tool as its closest id: same namespace, a mistyped namespace, a hidden namespace.
MISSES = ("t:apend", "admn:reset", "admin:rest", "reset:reset")


@contextmanager
def calling_as(who: Identity) -> Iterator[None]:
    reset = current_identity.set(who)
    try:
        yield
    finally:
        current_identity.reset(reset)


def leaks(error: Any) -> list[str]:
    """The forbidden ids an error's message or details name."""
    text = json.dumps(error.to_dict() if isinstance(error, UnknownToolError) else error)
    return [key for key in HIDDEN if key in text]


async def test_did_you_mean_names_only_tools_the_caller_may_see() -> None:
    async with ops_gateway(OPS) as gw:
        with calling_as(DEV):
            for miss in MISSES:
                with pytest.raises(UnknownToolError) as described:
                    gw.describe(miss)
                assert described.value.op == "describe_tool" and not leaks(described.value), miss
                ran = await gw.run(miss, {}, CallContext(meta={IDENTITY_KEY: DEV}))
                assert isinstance(ran.error, UnknownToolError) and ran.error.op == "run_tool", miss
                assert not leaks(ran.error) and not any(key in ran.text for key in HIDDEN), miss
            # Suggestions still come, from what the caller sees.
            with pytest.raises(UnknownToolError) as typo:
                gw.examples("t:lokup")
            assert typo.value.details["closest"] == ["t:lookup"]
        with calling_as(ADMIN):  # whoever may see them is still pointed at them
            with pytest.raises(UnknownToolError) as described:
                gw.describe("admn:reset")
            assert "admin:reset" in described.value.details["closest"]
            ran = await gw.run("t:apend", {}, CallContext(meta={IDENTITY_KEY: ADMIN}))
            assert ran.error is not None and "t:append" in ran.error.details["closest"]


async def test_a_hidden_namespace_whose_backend_is_down_is_simply_unknown() -> None:
    async with ops_gateway(OPS) as gw:
        await gw.registry.unregister("admin")
        await gw.registry.register(FakeBackend("admin", list_fails=True))
        ran = await gw.run("admin:reset", {}, CallContext(meta={IDENTITY_KEY: DEV}))
        assert ran.error is not None and ran.error.code == "tool_not_found", ran.text
        assert "unavailable" not in ran.text and "refused" not in ran.text
        with calling_as(DEV), pytest.raises(UnknownToolError):
            gw.describe("admin:reset")
        with calling_as(ADMIN):
            ran = await gw.run("admin:reset", {}, CallContext(meta={IDENTITY_KEY: ADMIN}))
            assert ran.error is not None and ran.error.code == "backend_unavailable"


async def test_list_namespaces_shows_visible_namespaces_with_visible_counts() -> None:
    async with ops_gateway(OPS) as gw:
        with calling_as(DEV):
            listed = await gw.list_namespaces()
            assert [(n["namespace"], n["tool_count"]) for n in listed["namespaces"]] == [("t", 4)]
            assert listed["total"] == 1
        with calling_as(ADMIN):
            listed = await gw.list_namespaces()
            assert [(n["namespace"], n["tool_count"]) for n in listed["namespaces"]] == [("t", 5), ("admin", 1)]
    async with ops_gateway({}) as gw:  # without auth: everything, as before
        assert [n["tool_count"] for n in (await gw.list_namespaces())["namespaces"]] == [5, 1]


async def test_a_visible_namespace_whose_backend_is_down_is_still_listed() -> None:
    async with ops_gateway(OPS) as gw:
        await gw.registry.register(FakeBackend("mail", list_fails=True))
        with calling_as(DEV):
            rows = {n["namespace"]: n for n in (await gw.list_namespaces())["namespaces"]}
        assert set(rows) == {"t", "mail"} and not rows["mail"]["healthy"] and rows["mail"]["tool_count"] == 0


async def test_search_reasons_name_only_visible_namespaces() -> None:
    async with ops_gateway(OPS) as gw:
        with calling_as(DEV):
            for namespace in ("nope", "admin"):
                found = gw.search("reset", namespace=namespace)
                assert found["tools"] == [] and found["total"] == 0
                assert found["reason"] == f"No namespace '{namespace}'. Known namespaces: t."
            assert gw.search("look up a word", namespace="t")["tools"][0]["id"] == "t:lookup"


@pytest.fixture
async def dev_client() -> Any:
    """The official MCP client in memory, calling as a local caller with role dev; tools also listed directly."""
    ops = {"auth": {**OPS["auth"], "local_roles": ["dev"]}}
    async with ops_gateway(ops, server={"expose": "both"}) as gw, Client(McpSurface(gw).server) as client:
        yield client


async def test_through_mcp_forbidden_tools_never_show(dev_client: Client) -> None:
    for miss in MISSES:
        for answer in (
            await dev_client.call_tool("describe_tool", {"tool_id": miss}),
            await run(dev_client, miss, {}),
        ):
            error = error_of(answer)
            assert error["code"] == "tool_not_found" and not leaks(error), (miss, error)
    namespaces = (await dev_client.call_tool("list_namespaces", {})).structured_content
    assert [(n["namespace"], n["tool_count"]) for n in namespaces["namespaces"]] == [("t", 4)]
    listed = {t.name for t in (await dev_client.list_tools()).tools}
    assert "t__lookup" in listed and not listed & {"admin__reset", "t__append"}
    unknown = await dev_client.call_tool("admin__rese", {})  # a direct name that is not listed
    assert unknown.is_error and "admin__reset" not in text_of(unknown)


async def test_without_rules_forbidding_them_suggestions_are_unchanged() -> None:
    async with ops_gateway({}) as gw:
        with pytest.raises(UnknownToolError) as described:
            gw.describe("admn:reset")
        assert "admin:reset" in described.value.details["closest"]
        ran = await gw.run("t:apend", {})
        assert ran.error is not None and ran.error.details["closest"] == ["t:append"]


async def test_over_http_an_api_key_caller_sees_only_its_tools(tmp_path: Path) -> None:
    # A real `aperture serve` process over streamable HTTP: the caller is whoever its API key says.
    key = "k-" + "v" * 30
    config = {
        "backends": [
            {
                "name": "toolbox",
                "kind": "python",
                "module": "toolbox",
                "path": str(FIXTURES.parent.parent / "examples"),
            },
            {"name": "ops", "kind": "python", "module": "ops_tools", "path": str(FIXTURES)},
        ],
        "server": {"expose": "both"},
        "ops": {
            "auth": {
                "enabled": True,
                "api_keys": [{"name": "ci", "sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": ["dev"]}],
                "rules": [{"tools": "ops:*", "roles": ["admin"]}],
            }
        },
    }
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving_http(path) as url:
        async with (
            httpx2.AsyncClient(headers={"x-api-key": key}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            for answer in (
                await client.call_tool("describe_tool", {"tool_id": "op:whoami"}),
                await run(client, "ops:whoam", {}),
            ):
                error = error_of(answer)
                assert error["code"] == "tool_not_found" and "ops:" not in json.dumps(error["details"]), error
            namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
            assert [n["namespace"] for n in namespaces] == ["toolbox"]
            listed = [t.name for t in (await client.list_tools()).tools]
            assert "toolbox__calculate" in listed and not [n for n in listed if n.startswith("ops")]


async def test_a_cursor_is_good_only_for_callers_with_the_same_rights() -> None:
    async with ops_gateway(OPS) as gw:
        with calling_as(ADMIN):
            first = await gw.list_namespaces(limit=1)
            page = gw.list_tools(limit=1)
        assert "nextCursor" in first and "nextCursor" in page
        with calling_as(DEV):  # sees fewer tools: the admin's pages do not line up with its own
            with pytest.raises(InvalidCursorError, match="cursor"):
                await gw.list_namespaces(limit=1, cursor=first["nextCursor"])
            with pytest.raises(InvalidCursorError, match="cursor"):
                gw.list_tools(limit=1, cursor=page["nextCursor"])
        with calling_as(Identity(name="other-admin", method="jwt", roles=ADMIN.roles, scopes=ADMIN.scopes)):
            assert (await gw.list_namespaces(limit=1, cursor=first["nextCursor"]))["namespaces"]  # same rights
