"""The meta-tools through the official MCP client (in memory): what an agent sees and does."""

from __future__ import annotations

import json
from typing import Any

import anyio
import faulty
import pytest
from mcp import Client

from aperture.gateway import META_TOOLS, Gateway
from aperture.surface.mcp import McpSurface
from tests.execution.test_registry import FakeBackend
from tests.mcp_helpers import META_NAMES, error_of, run, text_of

pytestmark = pytest.mark.anyio


async def test_tool_list_is_exactly_the_meta_tools(client: Client) -> None:
    listing = await client.list_tools()
    assert {t.name for t in listing.tools} == META_NAMES
    for tool in listing.tools:
        assert tool.description and len(tool.description) > 20
        # Every argument says what it is for, in the listing an agent reads (issue 19: shorter, not fewer).
        assert all(spec.get("description") for spec in tool.input_schema["properties"].values()), tool.name


async def test_the_listing_is_lean_but_validation_stays_strict(client: Client) -> None:
    search = next(t for t in (await client.list_tools()).tools if t.name == "search_tools")
    assert "additionalProperties" not in search.input_schema  # tokens: the error below says it better
    assert search.input_schema["properties"]["cursor"] == {
        "type": "string",
        "description": "nextCursor from a previous identical search, for the next page.",
    }
    assert search.annotations is not None and search.annotations.read_only_hint is True
    unknown = await client.call_tool("search_tools", {"query": "x", "top_k": 3})
    assert unknown.is_error and "unknown argument 'top_k'" in text_of(unknown)
    explicit_null = await client.call_tool("search_tools", {"query": "miles", "cursor": None, "namespace": None})
    assert not explicit_null.is_error, text_of(explicit_null)


async def test_search_describe_run_session(client: Client) -> None:
    found = await client.call_tool("search_tools", {"query": "convert kilometres to miles", "limit": 3})
    assert not found.is_error
    hits = found.structured_content["tools"]
    assert hits[0]["id"] == "toolbox:convert_units"
    assert set(hits[0]) == {"id", "short_description", "tags", "score"}  # id is namespace:name: no repeats
    assert json.loads(text_of(found)) == found.structured_content

    doc = await client.call_tool("describe_tool", {"tool_id": "toolbox:convert_units", "detail_level": "schema"})
    schema = doc.structured_content["input_schema"]
    assert set(schema["required"]) == {"value", "from_unit", "to_unit"}

    ran = await run(client, "toolbox:convert_units", {"value": "42.195", "from_unit": "km", "to_unit": "mi"})
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content["result"]["result"] == pytest.approx(26.2188, abs=1e-3)


async def test_search_results_carry_no_schemas_and_are_ranked(client: Client) -> None:
    found = await client.call_tool("search_tools", {"query": "hash checksum sha256"})
    hits = found.structured_content["tools"]
    assert hits[0]["id"] == "toolbox:hash_text"
    assert all("input_schema" not in h for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


async def test_search_pages_with_cursor_until_exhausted(client: Client) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        args: dict[str, Any] = {"query": "text", "limit": 2}
        if cursor:
            args["cursor"] = cursor
        page = (await client.call_tool("search_tools", args)).structured_content
        seen += [h["id"] for h in page["tools"]]
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == page["total"]
    assert len(seen) > 2


async def test_cursor_from_another_query_is_rejected(client: Client) -> None:
    page = (await client.call_tool("search_tools", {"query": "text", "limit": 1})).structured_content
    other = await client.call_tool("search_tools", {"query": "date", "limit": 1, "cursor": page["nextCursor"]})
    assert error_of(other)["code"] == "invalid_cursor"
    garbage = await client.call_tool("search_tools", {"query": "date", "cursor": "not-a-cursor!"})
    assert error_of(garbage)["code"] == "invalid_cursor"


async def test_cursor_is_invalid_once_the_catalog_changes(client: Client, gateway: Gateway) -> None:
    page = (await client.call_tool("search_tools", {"query": "text", "limit": 1})).structured_content
    await gateway.registry.refresh("toolbox")
    stale = await client.call_tool("search_tools", {"query": "text", "limit": 1, "cursor": page["nextCursor"]})
    error = error_of(stale)
    assert error["code"] == "invalid_cursor"
    assert "changed" in error["message"]


async def test_search_filters_by_namespace_and_tags(client: Client) -> None:
    only_faulty = await client.call_tool("search_tools", {"query": "text", "namespace": "faulty"})
    assert {h["id"].split(":")[0] for h in only_faulty.structured_content["tools"]} == {"faulty"}
    tagged = await client.call_tool("search_tools", {"query": "date", "tags": ["calendar"]})
    assert tagged.structured_content["tools"]
    assert all("calendar" in h["tags"] for h in tagged.structured_content["tools"])


async def test_search_that_finds_nothing_says_why(client: Client) -> None:
    nothing = (await client.call_tool("search_tools", {"query": "xylophone quasar"})).structured_content
    # Lexical search finds no hits; hybrid returns the closest tools, saying none of them fits.
    assert nothing["confidence"] == "none"
    assert "No tool matches" in nothing["reason"] or "Nothing in the catalog fits" in nothing["reason"]
    unknown_ns = (await client.call_tool("search_tools", {"query": "x", "namespace": "nope"})).structured_content
    assert "No namespace 'nope'" in unknown_ns["reason"] and "toolbox" in unknown_ns["reason"]
    empty = await client.call_tool("search_tools", {"query": "   "})
    assert error_of(empty)["code"] == "invalid_request"


async def test_search_limit_out_of_range_is_explained(client: Client) -> None:
    result = await client.call_tool("search_tools", {"query": "date", "limit": 500})
    error = error_of(result)
    assert error["code"] == "validation_input"
    assert "argument 'limit': 500 is greater than the maximum of 100" in error["message"]


async def test_describe_detail_levels_grow(client: Client) -> None:
    levels = {}
    for level in ("summary", "schema", "full"):
        result = await client.call_tool("describe_tool", {"tool_id": "toolbox:calculate", "detail_level": level})
        levels[level] = result.structured_content
    assert "input_schema" not in levels["summary"]
    assert "input_schema" in levels["schema"] and "examples" not in levels["schema"]
    assert levels["full"]["examples"] and levels["full"]["annotations"]["readOnlyHint"] is True
    capped = await client.call_tool(
        "describe_tool", {"tool_id": "toolbox:calculate", "detail_level": "full", "examples_max": 1}
    )
    assert len(capped.structured_content["examples"]) == 1


async def test_list_tool_examples(client: Client) -> None:
    result = await client.call_tool("list_tool_examples", {"tool_id": "toolbox:convert_units", "max": 1})
    assert len(result.structured_content["examples"]) == 1
    none = await client.call_tool("list_tool_examples", {"tool_id": "faulty:echo"})
    assert none.structured_content["examples"] == [] and "no examples" in none.structured_content["note"]


async def test_list_tools_and_namespaces(client: Client) -> None:
    tools = (await client.call_tool("list_tools", {"namespace": "faulty", "limit": 100})).structured_content
    assert tools["total"] == len(tools["tools"]) >= 5
    by_kind = (await client.call_tool("list_tools", {"backend_kind": "python", "limit": 5})).structured_content
    assert len(by_kind["tools"]) == 5 and "nextCursor" in by_kind
    namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
    assert {n["namespace"] for n in namespaces} == {"toolbox", "faulty"}
    assert all(n["healthy"] and n["tool_count"] > 0 for n in namespaces)


async def test_run_tool_accepts_args_as_a_json_string(client: Client) -> None:
    result = await run(client, "toolbox:calculate", json.dumps({"expression": "6*7"}))
    assert not result.is_error, text_of(result)
    assert text_of(result) == "42.0"


async def test_run_tool_args_that_are_not_an_object(client: Client) -> None:
    for bad in ([1, 2], 7, "not json"):
        error = error_of(await run(client, "toolbox:calculate", bad))
        assert error["code"] == "validation_input"
        assert "'args' must be object" in error["message"]


async def test_unknown_tool_id_suggests_closest(client: Client) -> None:
    error = error_of(await run(client, "toolbox:calc", {}))
    assert error["code"] == "tool_not_found"
    assert error["details"]["closest"][0] == "toolbox:calculate"
    assert "Did you mean: toolbox:calculate" in error["message"]


@pytest.mark.parametrize(
    "tool_id",
    ["a:b:c:d", ":x", "", "x" * 10_000, "tool box:calc"],
    ids=["four-parts", "empty-namespace", "empty", "10kB", "space"],
)
async def test_malformed_tool_ids_are_explained(client: Client, tool_id: str) -> None:
    error = error_of(await run(client, tool_id, {}))
    assert error["code"] == "invalid_tool_id"
    assert "namespace:name" in error["message"]
    assert len(error["message"]) < 600  # a 10 kB id is not echoed back
    assert not (await run(client, "toolbox:calculate", {"expression": "1"})).is_error


async def test_a_bare_name_of_no_tool_says_what_an_id_is(client: Client) -> None:
    # A bare name is looked up as a tool name (issue 18): none is called "toolbox"; the closest may be named.
    error = error_of(await run(client, "toolbox", {}))
    assert error["code"] == "tool_not_found"
    assert error["message"].startswith("No tool 'toolbox'. Tool ids are 'namespace:name'.")


async def test_missing_extra_and_wrong_arguments_are_reported_together(client: Client) -> None:
    result = await run(client, "toolbox:convert_units", {"valu": 1, "from_unit": 3, "to_unit": "parsec"})
    error = error_of(result)
    assert error["code"] == "validation_input"
    message = error["message"]
    assert "unknown argument 'valu'. Did you mean 'value'?" in message
    assert "missing required argument 'value' (number)" in message
    assert "argument 'to_unit' must be one of" in message and '"parsec"' in message
    assert "Valid parameters:" in message and "- value (number, required): The quantity to convert." in message
    assert len(error["details"]["violations"]) == 4  # from_unit: 3 is coerced to "3", then not in the enum


async def test_coerced_arguments_reach_the_tool(client: Client) -> None:
    result = await run(client, "toolbox:add_to_date", {"start": "2024-01-31", "months": "1", "days": 1.0})
    assert not result.is_error, text_of(result)
    assert result.structured_content["result"] == {"result": "2024-03-01"}


async def test_megabyte_argument_is_handled(client: Client) -> None:
    big = "x" * 1_000_000
    result = await run(client, "faulty:echo", {"text": big})
    assert not result.is_error
    assert text_of(result) == big
    wrong = await run(client, "toolbox:calculate", {"expression": 5, "precision": big})
    assert len(error_of(wrong)["message"]) < 2000


async def test_tool_that_raises(client: Client) -> None:
    error = error_of(await run(client, "faulty:explode", {"message": "disk on fire"}))
    assert error["code"] == "execution_failed"
    assert "RuntimeError: disk on fire" in error["message"]
    assert error["backend_kind"] == "python" and error["tool_id"] == "faulty:explode"


async def test_tool_that_never_returns_times_out(client: Client) -> None:
    with anyio.fail_after(5):
        error = error_of(await run(client, "faulty:hang", {}))
    assert error["code"] == "timeout" and error["retryable"] is True
    assert "1 s" in error["message"]
    assert not (await run(client, "faulty:echo", {"text": "still here"})).is_error


async def test_blocking_sync_tool_does_not_block_other_calls(client: Client) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, client, "faulty:blocking_sleep", {"seconds": 0.8})
        await anyio.sleep(0.05)
        with anyio.fail_after(0.5):
            assert not (await run(client, "faulty:echo", {"text": "quick"})).is_error


async def test_unserialisable_result_is_an_error(client: Client) -> None:
    error = error_of(await run(client, "faulty:unserialisable", {}))
    assert error["code"] == "execution_failed"
    assert "cannot be converted to JSON" in error["message"]


async def test_result_violating_output_schema(client: Client) -> None:
    error = error_of(await run(client, "faulty:wrong_output", {}))
    assert error["code"] == "validation_output"
    assert "n" in error["message"]


async def test_progress_reaches_the_client(client: Client) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    result = await client.call_tool(
        "run_tool", {"tool_id": "faulty:progress", "args": {"steps": 3}}, progress_callback=on_progress
    )
    assert not result.is_error
    assert [u[0] for u in updates] == [1, 2, 3]


async def test_cancellation_reaches_the_backend(gateway: Gateway) -> None:
    # Over JSON-RPC (legacy in-memory transport) a cancelled call sends notifications/cancelled.
    faulty.reset()
    async with Client(McpSurface(gateway).server, mode="legacy") as client:
        await _cancel_one_call(client)


async def _cancel_one_call(client: Client) -> None:
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, client, "faulty:wait_for_cancel", {})
            with anyio.fail_after(5):
                await faulty.started.wait()
            tg.cancel_scope.cancel()
    with anyio.fail_after(5):
        await faulty.cancelled.wait()
    assert not (await run(client, "faulty:echo", {"text": "after cancel"})).is_error


async def test_unknown_meta_tool_is_explained(client: Client) -> None:
    result = await client.call_tool("toolbox:calculate", {"expression": "1"})
    error = error_of(result)
    assert error["code"] == "tool_not_found"
    assert "run_tool" in error["details"]["closest"] or "search_tools" in error["message"]


async def test_meta_tool_with_unknown_argument(client: Client) -> None:
    error = error_of(await client.call_tool("search_tools", {"query": "x", "top_k": 3}))
    assert error["code"] == "validation_input"
    assert "unknown argument 'top_k'" in error["message"] and "- limit (integer, optional)" in error["message"]


def test_meta_tool_names_match_the_reference_server() -> None:
    conditional = {"list_tool_examples"}  # offered where some tool has examples
    assert {t.name for t in META_TOOLS if t.offered is None} == META_NAMES - conditional  # always offered
    conditional |= {"list_skills", "describe_skill", "plan_skill", "run_skill"}  # offered where there are skills
    conditional |= {"list_toolsets", "describe_toolset"}  # offered where toolsets are configured
    conditional |= {"execute_code"}  # offered where execution.code is enabled, to the roles it allows
    assert {t.name for t in META_TOOLS if t.offered is not None} == conditional
    reference = META_NAMES | conditional  # metatools-mcp's set
    assert {t.name for t in META_TOOLS} <= reference
    run_tool = next(t for t in META_TOOLS if t.name == "run_tool")
    assert set(run_tool.listing_schema["properties"]) == {"tool_id", "args"}


async def test_the_reference_servers_run_flags_are_accepted_but_not_listed(client: Client) -> None:
    """A program written for metatools-mcp sends run_tool's and run_chain's flags; a model is not told of them."""
    listing = {t.name: t for t in (await client.list_tools()).tools}
    assert set(listing["run_tool"].input_schema["properties"]) == {"tool_id", "args"}
    assert set(listing["run_chain"].input_schema["properties"]) == {"steps"}
    args = {"text": "Hello World"}
    flags = {"include_tool": True, "include_backend": True, "include_mcp_result": True, "stream": True}
    ran = await client.call_tool("run_tool", {"tool_id": "toolbox:slugify", "args": args, **flags})
    assert not ran.is_error, text_of(ran)
    data = ran.structured_content
    assert data["result"] == {"result": "hello-world"}
    assert data["backend"] == {"kind": "python", "name": "toolbox"}
    assert data["tool"]["id"] == "toolbox:slugify" and data["tool"]["description"]
    assert data["mcp_result"]["structuredContent"] == data["result"]
    plain = (await run(client, "toolbox:slugify", args)).structured_content
    assert set(plain) == {"tool_id", "result", "duration_ms"}  # nothing asked, nothing added
    chain = await client.call_tool(
        "run_chain", {"steps": [{"tool_id": "toolbox:slugify", "args": args}], "include_backends": False}
    )
    assert not chain.is_error and "backend" not in chain.structured_content["results"][0]
    override = {"tool_id": "toolbox:slugify", "args": args, "backend_override": {"kind": "mcp"}}
    error = error_of(await client.call_tool("run_tool", override))
    assert error["code"] == "invalid_request" and "backend_override is not supported" in error["message"]
    assert set(listing["describe_tool"].input_schema["properties"]) == {"tool_id", "detail_level"}
    described = await client.call_tool(
        "describe_tool", {"tool_id": "toolbox:convert_units", "detail_level": "full", "examples_max": 1}
    )
    everything = await client.call_tool("describe_tool", {"tool_id": "toolbox:convert_units", "detail_level": "full"})
    assert len(described.structured_content["examples"]) == 1 < len(everything.structured_content["examples"])
    assert "backend_name" not in listing["list_tools"].input_schema["properties"]
    page = (await client.call_tool("list_tools", {"backend_name": "toolbox"})).structured_content["tools"]
    assert page and {t["id"].split(":")[0] for t in page} == {"toolbox"}
    wrong = error_of(await client.call_tool("run_tool", {"tool_id": "toolbox:slugify", "include_tool": "yes"}))
    assert "include_tool" in wrong["message"] and "- include_tool" not in wrong["message"]  # valid ones: as listed


async def test_tools_of_a_failed_backend_are_unavailable_not_unknown(client: Client, gateway: Gateway) -> None:
    await gateway.registry.register(FakeBackend("flaky", list_fails=True))
    error = error_of(await run(client, "flaky:t0", {}))
    assert error["code"] == "backend_unavailable" and error["retryable"] is True
    assert "upstream refused" in error["message"]
    described = error_of(await client.call_tool("describe_tool", {"tool_id": "flaky:t0"}))
    assert described["code"] == "backend_unavailable" and described["op"] == "describe_tool"
    namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
    flaky = next(n for n in namespaces if n["namespace"] == "flaky")
    assert not flaky["healthy"] and "upstream refused" in flaky["message"]
