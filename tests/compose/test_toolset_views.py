"""A toolset view applies on every path through the gateway's one visibility seam: search (its total, cursors
and did-you-mean), describe, examples, run, list_tools, list_namespaces, list_toolsets and describe_toolset;
and the caller's bindings (API key, role, scope, token claim) decide which view it gets."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import jwt
import pytest
from mcp import Client

from aperture.config import load_config
from aperture.execution import BackendRegistry, CallContext
from aperture.gateway import Gateway, call_meta_tool, offered_meta_tools
from aperture.model import (
    BackendUnavailableError,
    ConfigError,
    InvalidCursorError,
    InvalidRequestError,
    UnknownToolError,
)
from aperture.ops import TOOLSET_KEY, current_toolset
from aperture.ops.auth import JwtVerifier
from aperture.ops.identity import IDENTITY_KEY, Identity, current_identity, local_identity
from aperture.ops.settings import AuthSettings, JwtSettings
from aperture.surface.mcp import McpSurface
from tests.conftest import ROOT
from tests.execution.test_registry import FakeBackend
from tests.mcp_helpers import error_of, run, text_of
from tests.ops.conftest import ops_config, ops_gateway

pytestmark = pytest.mark.anyio

# Namespaces: t (lookup and slow read-only; append, flaky, boom not) and admin (reset).
TOOLSETS: list[dict[str, Any]] = [
    {"name": "reads", "description": "Read-only tools.", "include": {"annotations": {"readOnlyHint": True}}},
    {"name": "admin", "include": {"namespaces": ["admin"]}},
    {
        "name": "words",
        "include": {"tools": ["t:lookup", "t:append"]},
        "rename": {"t:lookup": "find"},
        "descriptions": {"t:append": "Add a word at the end. Not idempotent."},
    },
]
KEY = Identity(name="ci", method="api_key", roles=frozenset({"dev"}), toolsets=("reads",))
BOTH = Identity(name="ops", method="api_key", toolsets=("admin", "reads"))
AUTH: dict[str, Any] = {"auth": {"enabled": True, "local_roles": ["*"]}}


@contextmanager
def through(toolset: str | None = None, who: Identity | None = None) -> Iterator[None]:
    """Serve as if the request came through `toolset` (as `/mcp/{toolset}` does), as `who`."""
    token = current_toolset.set(toolset)
    caller = current_identity.set(who)
    try:
        yield
    finally:
        current_identity.reset(caller)
        current_toolset.reset(token)


@asynccontextmanager
async def gateway(ops: dict[str, Any] | None = None, **extra: Any) -> AsyncIterator[Gateway]:
    async with ops_gateway(ops or {}, toolsets=TOOLSETS, **extra) as gw:
        yield gw


def ids(found: dict[str, Any]) -> list[str]:
    return sorted(hit["id"] for hit in found["tools"])


async def test_search_and_list_tools_show_only_the_view_and_count_only_it() -> None:
    async with gateway() as gw:
        with through("reads"):
            found = gw.search("word sleeps look up", limit=10)
            assert ids(found) == ["t:lookup", "t:slow"] and found["total"] == 2
            listed = gw.list_tools()
            assert ids(listed) == ["t:lookup", "t:slow"] and listed["total"] == 2
            assert gw.list_tools(namespace="admin")["total"] == 0
            nothing = gw.search("reset everything", namespace="admin")
            assert nothing["total"] == 0 and nothing["reason"] == "No namespace 'admin'. Known namespaces: t."
        with through():  # the whole catalog at /mcp
            assert gw.list_tools()["total"] == 6


async def test_a_cursor_from_one_toolset_does_not_page_another() -> None:
    async with gateway() as gw:
        with through("reads"):
            cursor = gw.list_tools(limit=1)["nextCursor"]
            searched = gw.search("word sleeps", limit=1)["nextCursor"]
        for elsewhere in ("words", None):
            with through(elsewhere), pytest.raises(InvalidCursorError, match="different query or filter"):
                gw.list_tools(limit=1, cursor=cursor)
            with through(elsewhere), pytest.raises(InvalidCursorError, match="different query or filter"):
                gw.search("word sleeps", limit=1, cursor=searched)
        with through("reads"):
            assert ids(gw.list_tools(limit=1, cursor=cursor)) == ["t:slow"]
            assert gw.search("word sleeps", limit=1, cursor=searched)["total"] == 2


async def test_describe_run_and_examples_treat_an_outside_tool_as_unknown_suggesting_only_the_view() -> None:
    async with gateway() as gw:
        with through("reads"):
            for miss in ("t:append", "t:apend", "admin:reset", "admn:reset", "append"):
                with pytest.raises(UnknownToolError) as described:
                    gw.describe(miss)
                suggested = described.value.details["closest"]
                assert not {"t:append", "admin:reset"} & set(suggested), (miss, suggested)
                ran = await gw.run(miss, {"word": "x"})
                assert isinstance(ran.error, UnknownToolError) and ran.error.op == "run_tool", miss
                assert not {"t:append", "admin:reset"} & set(ran.error.details["closest"]), miss
            with pytest.raises(UnknownToolError) as typo:
                gw.examples("t:lokup")
            assert typo.value.details["closest"] == ["t:lookup"]
            assert (await gw.run("t:lookup", {"word": "hi"})).text == "HI"
        with through():
            assert (await gw.run("t:append", {"word": "x"})).text == "x"


async def test_list_namespaces_counts_only_the_view() -> None:
    async with gateway() as gw:
        with through("reads"):
            listed = await gw.list_namespaces()
            assert [(n["namespace"], n["tool_count"]) for n in listed["namespaces"]] == [("t", 2)]
        with through("admin"):
            listed = await gw.list_namespaces()
            assert [(n["namespace"], n["tool_count"]) for n in listed["namespaces"]] == [("admin", 1)]


async def test_a_renamed_tool_is_found_described_and_run_by_its_new_id_and_its_old_id_is_unknown() -> None:
    async with gateway() as gw:
        with through("words"):
            assert ids(gw.search("look a word up")) == ["t:append", "t:find"]
            named = gw.search("t:find append word end")["tools"]  # (append fits better, but find is named)
            assert [hit["id"] for hit in named] == ["t:find", "t:append"]
            doc = gw.describe("t:find")
            assert doc["id"] == "t:find"
            appended = gw.describe("t:append", "summary")
            assert appended["description"] == "Add a word at the end. Not idempotent."
            hit = next(h for h in gw.list_tools()["tools"] if h["id"] == "t:append")
            assert hit["short_description"] == "Add a word at the end."
            with pytest.raises(UnknownToolError) as old:
                gw.describe("t:lookup")
            assert old.value.details["closest"] == ["t:find"]
            ran = await gw.run("t:find", {"word": "hi"})
            assert ran.text == "HI" and ran.tool_id == "t:find"
            bad = await gw.run("t:find", {"wrd": "hi"})
            assert bad.error is not None and bad.error.code == "validation_input"
            assert "t:find" in bad.text and "t:lookup" not in bad.text and bad.error.tool_id == "t:find"
            old_run = await gw.run("t:lookup", {"word": "hi"})
            assert isinstance(old_run.error, UnknownToolError)
        with through():  # outside the toolset the tool has its own id
            assert gw.describe("t:lookup")["id"] == "t:lookup"


async def test_run_tools_reference_flags_describe_the_tool_as_the_view_shows_it() -> None:
    """`include_tool` names a renamed tool by its id in the view (never its old one) and gives the view's
    description; a tool outside the view is unknown with or without the flags."""
    async with gateway() as gw:
        with through("words"):
            flags = {"include_tool": True, "include_backend": True}
            found = await call_meta_tool(
                gw, "run_tool", {"tool_id": "t:find", "args": {"word": "hi"}, **flags}, CallContext()
            )
            assert not found.is_error and found.data["tool"]["id"] == "t:find" and "t:lookup" not in str(found.data)
            assert found.data["backend"] == {"kind": "python", "name": "t"}
            appended = await call_meta_tool(
                gw, "run_tool", {"tool_id": "t:append", "args": {"word": "x"}, **flags}, CallContext()
            )
            assert appended.data["tool"]["description"] == "Add a word at the end. Not idempotent."
            outside = await call_meta_tool(gw, "run_tool", {"tool_id": "admin:reset", **flags}, CallContext())
            assert outside.is_error and outside.data["error"]["code"] == "tool_not_found" and "tool" not in outside.data


async def test_a_bound_key_sees_only_its_toolsets_whatever_it_asks_for() -> None:
    async with gateway(AUTH) as gw:
        for asked in (None, "admin", "words", "no-such-toolset"):
            with through(asked, KEY):
                assert ids(gw.list_tools()) == ["t:lookup", "t:slow"], asked
                assert gw.access().view is not None
        ran = await gw.run("admin:reset", {}, CallContext(meta={IDENTITY_KEY: KEY}))
        assert isinstance(ran.error, UnknownToolError)
        with through(None, BOTH):  # bound twice: the union
            assert ids(gw.list_tools()) == ["admin:reset", "t:lookup", "t:slow"]
        with through("admin", BOTH):  # asking for one of its own toolsets narrows to it
            assert ids(gw.list_tools()) == ["admin:reset"]
        with through("words", BOTH):  # one not its own: its own toolsets
            assert ids(gw.list_tools()) == ["admin:reset", "t:lookup", "t:slow"]
        # A call's context names the toolset too (and wins over the request's).
        meta = {IDENTITY_KEY: BOTH, TOOLSET_KEY: "admin"}
        assert isinstance((await gw.run("t:lookup", {"word": "x"}, CallContext(meta=meta))).error, UnknownToolError)


async def test_roles_scopes_and_token_claims_bind_callers_to_toolsets() -> None:
    bindings = [{"roles": ["contractor"], "toolsets": ["reads"]}, {"scopes": ["ops:admin"], "toolsets": ["admin"]}]
    async with gateway({"auth": {"enabled": True, "bindings": bindings, "local_roles": ["*"]}}) as gw:
        contractor = Identity(name="c", method="jwt", roles=frozenset({"contractor"}))
        with through(None, contractor):
            assert ids(gw.list_tools()) == ["t:lookup", "t:slow"]
        both = Identity(name="c", method="jwt", roles=frozenset({"contractor"}), scopes=frozenset({"ops:admin"}))
        with through(None, both):
            assert ids(gw.list_tools()) == ["admin:reset", "t:lookup", "t:slow"]
        with through(None, Identity(name="local", roles=frozenset({"*"}))):  # '*' is no binding wildcard
            assert gw.list_tools()["total"] == 6
        claimed = Identity(name="t", method="jwt", toolsets=("no-such-toolset",))
        with through(None, claimed):  # bound only to toolsets that do not exist: sees nothing, not everything
            assert gw.list_tools()["total"] == 0 and gw.search("word")["total"] == 0
            assert gw.list_toolsets() == {"toolsets": []}


async def test_list_toolsets_and_describe_toolset_show_only_what_the_caller_may_use() -> None:
    async with gateway(AUTH) as gw:
        with through():
            listed = gw.list_toolsets()["toolsets"]
            assert [(t["id"], t["name"], t["toolCount"]) for t in listed] == [
                ("toolset:reads", "reads", 2),
                ("toolset:admin", "admin", 1),
                ("toolset:words", "words", 2),
            ]
            assert listed[0]["description"] == "Read-only tools."
            words = gw.describe_toolset("toolset:words")["toolset"]
            assert [t["id"] for t in words["tools"]] == ["t:find", "t:append"] and words["toolCount"] == 2
            assert set(words["tools"][0]) <= {"id", "short_description", "tags"}  # as search hits, without score
            assert gw.describe_toolset("words") == {"toolset": words}  # the bare name works too
        with through(None, KEY):
            assert [t["name"] for t in gw.list_toolsets()["toolsets"]] == ["reads"]
            for hidden in ("toolset:admin", "toolset:nope"):
                with pytest.raises(InvalidRequestError) as refused:
                    gw.describe_toolset(hidden)
                expected = f"No toolset '{hidden}'. Toolsets: toolset:reads (list_toolsets describes them)."
                assert refused.value.message == expected


async def test_the_toolset_meta_tools_are_offered_only_with_toolsets() -> None:
    async with ops_gateway({}) as plain:
        assert not {"list_toolsets", "describe_toolset"} & {t.name for t in offered_meta_tools(plain)}
    async with gateway() as gw:
        assert {"list_toolsets", "describe_toolset"} <= {t.name for t in offered_meta_tools(gw)}
        async with Client(McpSurface(gw).server) as client:
            answer = await client.call_tool("list_toolsets", {})
            assert [t["name"] for t in answer.structured_content["toolsets"]] == ["reads", "admin", "words"]
            missing = error_of(await client.call_tool("describe_toolset", {}))
            assert missing["code"] == "validation_input" and "toolset_id" in missing["message"]
            unknown = error_of(await client.call_tool("describe_toolset", {"toolset_id": "x" * 5000}))
            assert unknown["code"] == "invalid_request" and len(unknown["message"]) < 300
            assert (await run(client, "t:lookup", {"word": "ok"})).structured_content is not None


async def test_through_mcp_in_a_toolset_direct_tools_and_suggestions_are_the_views() -> None:
    async with gateway(server={"expose": "both"}) as gw:
        surface = McpSurface(gw)
        async with Client(surface.server) as client:
            with through("words"):
                listed = {t.name for t in (await client.list_tools()).tools}
                assert {"t__find", "t__append"} <= listed and not listed & {"t__lookup", "t__slow", "admin__reset"}
                assert text_of(await client.call_tool("t__find", {"word": "hi"})) == "HI"
                miss = await client.call_tool("t__lookup", {"word": "hi"})
                assert miss.is_error and "t__lookup" not in text_of(miss).split("Did you mean")[-1]
            listed = {t.name for t in (await client.list_tools()).tools}
            assert {"t__lookup", "admin__reset"} <= listed and "t__find" not in listed


async def test_a_rule_that_matches_nothing_stops_the_start_naming_it() -> None:
    broken = [{"name": "typo", "include": [{"namespaces": ["admn"]}]}]
    with pytest.raises(ConfigError) as refused:
        async with ops_gateway({}, toolsets=broken):
            pass
    assert "toolset 'typo': include[0] (namespaces admn) matches no tool" in refused.value.message


async def test_while_a_backend_is_down_a_rule_that_matches_nothing_only_warns_until_the_catalog_is_complete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("t", tools=2))
    await registry.register(FakeBackend("mail", list_fails=True))
    # (A rule of namespaces alone naming a configured backend is no problem: its resources and prompts count.)
    toolsets = [{"name": "mail", "include": [{"tools": ["mail:*"]}]}]
    with caplog.at_level(logging.WARNING, logger="aperture"):
        async with Gateway(ops_config({}, toolsets=toolsets), registry=registry) as gw:
            warned = [r for r in caplog.records if r.levelno == logging.WARNING and "toolset 'mail'" in r.message]
            assert len(warned) == 1 and "while the tools of mail are missing" in warned[0].message
            with through("mail"):
                assert gw.list_tools()["total"] == 0  # it serves, showing nothing yet
            await registry.unregister("mail")
            await registry.register(FakeBackend("mail", tools=1))  # back: the rule matches, nothing is said
            assert gw.check_toolsets() == []
            with through("mail"):
                assert ids(gw.list_tools()) == ["mail:t0"]
            caplog.clear()
            await registry.unregister("mail")  # gone for good, the catalog complete: an error, once
            errors = [r for r in caplog.records if r.levelno == logging.ERROR and "toolset 'mail'" in r.message]
            assert len(errors) == 1 and "shows what it matches" in errors[0].message
            assert gw.check_toolsets() == ["toolset 'mail': include[0] (tools mail:*) matches no tool"]
            assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


async def test_a_token_claim_binds_its_holder_to_the_toolsets_it_names() -> None:
    secret = "s3cret-" * 6
    verifier = JwtVerifier(JwtSettings(algorithms=["HS256"], secret=secret, toolsets_claim="toolsets"))
    claims = {"sub": "bot", "exp": time.time() + 60}
    spaced = await verifier.verify(jwt.encode({**claims, "toolsets": "admin reads"}, secret, algorithm="HS256"))
    listed = await verifier.verify(jwt.encode({**claims, "toolsets": ["words"]}, secret, algorithm="HS256"))
    unbound = await verifier.verify(jwt.encode(claims, secret, algorithm="HS256"))
    assert (spaced.toolsets, listed.toolsets, unbound.toolsets) == (("admin", "reads"), ("words",), ())
    async with gateway(AUTH) as gw:
        with through(None, spaced):
            assert ids(gw.list_tools()) == ["admin:reset", "t:lookup", "t:slow"]
        with through(None, listed):
            assert ids(gw.list_tools()) == ["t:append", "t:find"]
        with through(None, unbound):
            assert gw.list_tools()["total"] == 6


async def test_the_example_toolsets_select_what_the_demo_shows() -> None:
    async with Gateway(load_config(ROOT / "examples" / "toolsets.yaml")) as gw:  # every rule matches: it starts
        with through("dates"):
            assert ids(gw.list_tools()) == ["toolbox:date_difference", "toolbox:shift_date"]
        bot = Identity(name="text-bot", method="api_key", toolsets=("text",))
        with through("dates", bot):
            assert "toolbox:hash_text" not in ids(gw.list_tools()) and gw.list_tools()["total"] == 5


def test_a_stdio_caller_holding_a_bound_key_is_bound_too() -> None:
    key = "local-" + "k" * 30
    entry = {"name": "desk", "sha256": hashlib.sha256(key.encode()).hexdigest(), "toolsets": ["reads"]}
    auth = AuthSettings.model_validate({"enabled": True, "api_keys": [entry]})
    assert local_identity(auth, {"APERTURE_API_KEY": key}).toolsets == ("reads",)
    assert local_identity(auth, {}).toolsets == ()


async def test_a_tool_of_a_backend_that_is_down_is_said_down_in_a_toolset_that_names_it_by_id() -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("t"))
    await registry.register(FakeBackend("down", list_fails=True))
    toolsets = [
        {"name": "both", "include": {"namespaces": ["t", "down"]}},
        {"name": "tagged", "include": {"namespaces": ["down"], "tags": ["x"]}},
    ]
    async with Gateway(ops_config({}, toolsets=toolsets), registry=registry) as gw:
        for through_toolset in ("both", None):
            with through(through_toolset):
                ran = await gw.run("down:t0", {})
                assert isinstance(ran.error, BackendUnavailableError), through_toolset
                assert "Backend 'down' is unavailable" in ran.text
                with pytest.raises(BackendUnavailableError):
                    gw.describe("down:t0")
                assert isinstance((await gw.run("t:nope", {})).error, UnknownToolError)
        with through("tagged"):  # (whether the tool has the tag is unknown while it is absent: as any unknown id)
            assert isinstance((await gw.run("down:t0", {})).error, UnknownToolError)


async def test_surfaced_tools_are_listed_directly_only_inside_the_view_and_under_its_names() -> None:
    async with gateway(server={"expose": "meta", "surfaced": ["t:lookup", "t:append", "admin:reset"]}) as gw:
        with through("words"):
            async with Client(McpSurface(gw).server) as client:
                listed = {tool.name for tool in (await client.list_tools()).tools}
                assert {"t__find", "t__append"} <= listed and not {"t__lookup", "admin__reset"} & listed
                found = await client.call_tool("t__find", {"word": "hi"})
                assert not found.is_error and text_of(found) == "HI"
                outside = await client.call_tool("admin__reset", {})
                assert outside.is_error and text_of(outside).startswith("No tool 'admin__reset'.")
        with through():
            async with Client(McpSurface(gw).server) as client:
                listed = {tool.name for tool in (await client.list_tools()).tools}
                assert {"t__lookup", "t__append", "admin__reset"} <= listed and "t__find" not in listed
