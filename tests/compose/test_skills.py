"""Recipe skills: loading and checking, running as one tool call through every rule, limits, plans, inline
skills and hot reload; through the Gateway and the official MCP client."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from mcp import Client

from aperture.compose.skills import LIMITS_KEY, Limits, compile_recipe
from aperture.config import load_config, parse_config
from aperture.execution import CallContext
from aperture.gateway import Gateway
from aperture.gateway.metatools import META_TOOLS_BY_NAME
from aperture.model import ConfigError, UnknownToolError
from aperture.ops.identity import IDENTITY_KEY, Identity
from aperture.surface.mcp import McpSurface
from tests.compose.skill_gateways import EXAMPLE_SKILLS, reloaded, skills_gateway, until, write
from tests.execution.test_registry import FakeBackend
from tests.mcp_helpers import error_of, run, text_of
from tests.ops.conftest import Calls, ops_gateway

pytestmark = pytest.mark.anyio

NOTE = {"title": "Hello World", "text": "Some words here. And more.", "tags": ["One Two", "three"]}
SKILL_TOOLS = {"list_skills", "describe_skill", "plan_skill", "run_skill"}


async def meta(gateway: Gateway, name: str, args: dict[str, Any], call: CallContext | None = None) -> Any:
    return await META_TOOLS_BY_NAME[name].call(gateway, call or CallContext(), args)


# --- the happy path ------------------------------------------------------------------------------------


async def test_a_recipe_runs_as_one_call_with_when_foreach_and_output() -> None:
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        answer = await client.call_tool("run_skill", {"skill_id": "skills:publish_note", "inputs": NOTE})
        assert not answer.is_error, text_of(answer)
        result = answer.structured_content["result"]
        assert result["value"] == {
            "slug": "hello-world",
            "words": 5,
            "reading": "about 2 s to read",
            "tags": ["one_two", "three"],
            "sha256": None,  # the step's `when` was false
        }
        assert json.loads(text_of(answer)) == result["value"]  # the text is the output, compactly
        steps = {r["step_id"]: r for r in result["results"]}
        assert list(steps) == ["slug", "stats", "tag_slugs", "digest"]
        assert steps["digest"] == {
            "step_id": "digest",
            "tool_id": "toolbox:hash_text",
            "skipped": True,
            "durationMs": 0.0,
        }
        assert steps["tag_slugs"]["calls"] == 2 and steps["tag_slugs"]["value"] == [
            {"result": "one_two"},
            {"result": "three"},
        ]
        assert all(r["durationMs"] >= 0 for r in result["results"]) and result["durationMs"] >= sum(
            r["durationMs"] for r in result["results"]
        )
        checked = await client.call_tool(
            "run_skill", {"skill_id": "publish_note", "inputs": {**NOTE, "checksum": True}}
        )
        assert checked.structured_content["result"]["value"]["sha256"].startswith("a099b25e")
        # run_tool on the skill's id is the same call
        same = await run(client, "skills:publish_note", NOTE)
        assert same.structured_content["result"]["value"] == result["value"]


async def test_the_inputs_are_checked_as_a_tools_arguments_are() -> None:
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        error = error_of(await client.call_tool("run_skill", {"skill_id": "publish_note", "inputs": {"title": 3}}))
        assert error["code"] == "validation_input" and "missing required argument 'text'" in error["message"]


async def test_skills_are_searchable_and_described_like_tools() -> None:
    async with skills_gateway() as gw:
        found = gw.search("slug and checksum for a note to publish")
        assert found["tools"][0]["id"] == "skills:publish_note"
        schema = gw.describe("skills:publish_note", "schema")
        assert schema["input_schema"]["required"] == ["title", "text"]
        listed = await meta(gw, "list_skills", {})
        assert {(s["id"], s["kind"], s["stepCount"]) for s in listed["skills"]} == {
            ("skills:publish_note", "recipe", 4),
            ("skills:release-notes", "instructions", 0),
            ("skills:slug_fingerprint", "recipe", 5),
        }
        described = await meta(gw, "describe_skill", {"skill_id": "skills:publish_note"})
        assert [s["id"] for s in described["skill"]["steps"]] == ["slug", "stats", "tag_slugs", "digest"]
        assert described["skill"]["steps"][2]["foreach"] == "{{ inputs.tags || `[]` }}"


async def test_skill_tools_are_offered_only_where_there_are_skills(tmp_path: Path) -> None:
    async with ops_gateway({}) as plain, Client(McpSurface(plain).server) as client:
        assert not SKILL_TOOLS & {t.name for t in (await client.list_tools()).tools}
        assert error_of(await client.call_tool("run_skill", {"skill_id": "x"}))["code"] == "tool_not_found"
    async with skills_gateway(tmp_path) as empty, Client(McpSurface(empty).server) as client:
        assert not SKILL_TOOLS & {t.name for t in (await client.list_tools()).tools}
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= SKILL_TOOLS


# --- bad skill files: each reported with file and line, the others serving -----------------------------

GOOD = """
name: good
description: Upper-case a word.
inputs: {properties: {word: {type: string}}, required: [word]}
steps:
  - {id: up, tool_id: "t:lookup", args: {word: "{{ inputs.word }}"}}
"""

BAD = {
    "not_yaml.yaml": ("name: broken\nsteps: [\n  - id: a\n    tool_id: t:lookup\n  ]: oops\n", 3, "not valid YAML"),
    "unknown_tool.yaml": (
        "name: unknown_tool\nsteps:\n  - id: a\n    tool_id: toolbox:slugfy\n    args: {text: x}\n",
        4,
        "no tool 'toolbox:slugfy'. Did you mean: toolbox:slugify?",
    ),
    "unknown_backend.yaml": (
        "name: unknown_backend\nsteps:\n  - {id: a, tool_id: 'nowhere:thing'}\n",
        3,
        "no backend is named 'nowhere'",
    ),
    "missing_input.yaml": (
        "name: missing_input\ninputs: {properties: {title: {type: string}}}\nsteps:\n"
        "  - id: a\n    tool_id: toolbox:slugify\n    args:\n      text: '{{ inputs.titel }}'\n",
        7,
        "inputs.titel is not a declared input (declared: title)",
    ),
    "later_step.yaml": (
        "name: later_step\nsteps:\n  - id: a\n    tool_id: t:lookup\n    args: {word: '{{ steps.b.result }}'}\n"
        "  - {id: b, tool_id: 't:lookup', args: {word: x}}\n",
        5,
        "steps.b is step 2, which has not run yet when step 1 runs",
    ),
    "bad_template.yaml": (
        "name: bad_template\nsteps:\n  - id: a\n    tool_id: t:lookup\n    args: {word: '{{ inputs.[ }}'}\n",
        5,
        "is not a valid JMESPath expression",
    ),
    "bad_args.yaml": (
        "name: bad_args\nsteps:\n  - id: a\n    tool_id: toolbox:text_statistics\n"
        "    args: {top_words: many, colour: red}\n",
        5,
        "'colour' is not a parameter of toolbox:text_statistics",
    ),
    "self_loop.yaml": (
        "name: self_loop\nsteps:\n  - {id: a, tool_id: 'skills:self_loop'}\n",
        2,
        "calls itself (skills:self_loop → skills:self_loop)",
    ),
    "loop_a.yaml": ("name: loop_a\nsteps:\n  - {id: a, tool_id: 'skills:loop_b'}\n", 2, "calls itself"),
    "loop_b.yaml": ("name: loop_b\nsteps:\n  - {id: b, tool_id: 'skills:loop_a'}\n", 2, "calls itself"),
}


async def test_every_bad_file_is_reported_with_file_and_line_and_the_rest_serve(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", GOOD)
    for name, (text, _, _) in BAD.items():
        (tmp_path / name).write_text(text)
    async with skills_gateway(tmp_path) as gw, Client(McpSurface(gw).server) as client:
        assert gw.skills is not None and gw.skills.report is not None
        problems = [p for p in gw.skills.report.problems if p.severity == "error"]
        for name, (_, line, reason) in BAD.items():
            mine = [p for p in problems if p.path == tmp_path / name]
            assert any(reason in p.reason and p.line == line for p in mine), (name, [str(p) for p in mine])
        assert any("missing" not in p.reason and "'top_words' must be integer" in p.reason for p in problems)
        listed = await client.call_tool("list_skills", {})
        assert [s["id"] for s in listed.structured_content["skills"]] == ["skills:good"]
        for name in ("unknown_tool", "missing_input", "later_step", "self_loop"):
            error = error_of(await client.call_tool("run_skill", {"skill_id": name}))
            assert error["code"] == "tool_not_found" and error["message"].startswith(f"Skill '{name}' is not available")
            assert BAD[f"{name}.yaml"][2] in error["message"] and str(tmp_path) not in error["message"]
        assert error_of(await run(client, "skills:loop_a", {}))["code"] == "tool_not_found"
        ran = await client.call_tool("run_skill", {"skill_id": "good", "inputs": {"word": "still"}})
        assert ran.structured_content["result"]["value"] == {"result": "STILL"}


async def test_a_tool_of_a_backend_that_is_down_is_a_warning_and_is_checked_again_later(tmp_path: Path) -> None:
    write(tmp_path, "later.yaml", "name: later\nsteps:\n  - {id: a, tool_id: 'late:t0'}\n")
    async with skills_gateway(tmp_path) as gw:
        await gw.registry.register(FakeBackend("late", list_fails=True))
        await until(gw, lambda: "skills:later" in gw.registry.snapshot.tools)  # served, with a warning
        assert gw.skills is not None and gw.skills.report is not None
        assert any("backend 'late' is down" in p.reason for p in gw.skills.report.problems if p.severity == "warning")
        await gw.registry.unregister("late")  # gone for good: the skill is withdrawn
        await until(gw, lambda: "skills:later" not in gw.registry.snapshot.tools)
        await gw.registry.register(FakeBackend("late"))  # back, with the tool: served again
        await until(gw, lambda: "skills:later" in gw.registry.snapshot.tools)
        assert (await gw.run("skills:later", {})).structured["value"] == {"text": "t0"}


# --- running: failures, limits, loops -----------------------------------------------------------------


async def test_the_first_failing_step_is_named_with_its_error_and_the_earlier_results_kept(tmp_path: Path) -> None:
    write(
        tmp_path,
        "fails.yaml",
        """
        name: fails
        steps:
          - {id: first, tool_id: "t:lookup", args: {word: a}}
          - {id: second, tool_id: "t:boom"}
          - {id: third, tool_id: "t:lookup", args: {word: c}}
        """,
    )
    calls = Calls()
    async with skills_gateway(tmp_path, calls=calls) as gw:
        result = await gw.run("skills:fails", {})
        assert result.is_error and result.structured is not None
        error = result.structured["error"]
        assert error["step_id"] == "second" and error["step_index"] == 1 and error["code"] == "execution_failed"
        assert error["message"].startswith("Step 'second' (2 of 3, t:boom) failed:") and "kaput" in error["message"]
        assert [r.get("value", r.get("error")) is not None for r in result.structured["results"]] == [True, True]
        assert result.text == error["message"] and calls.counts.get("lookup") == 1 and "value" not in result.structured


FOREACH = """
name: loop_over
inputs: {properties: {items: {type: array}}}
steps:
  - {id: each, tool_id: "t:lookup", foreach: "{{ inputs.items }}", args: {word: "{{ item }}"}}
"""
FOREACH_RESULT = """
name: loop_result
inputs: {properties: {count: {type: integer}}}
steps:
  - {id: numbers, tool_id: "t:numbers", args: {count: "{{ inputs.count }}"}}
  - {id: each, tool_id: "t:lookup", foreach: "{{ steps.numbers.result }}", args: {word: "n{{ index }}"}}
"""


CONCURRENT = """
name: fan_out
inputs: {properties: {items: {type: array}, fail: {type: array}}}
steps:
  - id: each
    tool_id: "t:overlap"
    foreach: "{{ inputs.items }}"
    concurrency: 4
    args: {item: "{{ item }}", fail: "{{ contains(inputs.fail || `[]`, item) }}"}
"""


async def test_a_foreach_runs_its_calls_concurrency_at_a_time_in_the_items_order(tmp_path: Path) -> None:
    write(tmp_path, "fan_out.yaml", CONCURRENT)
    write(tmp_path, "loop_over.yaml", FOREACH)
    calls = Calls()
    async with skills_gateway(tmp_path, calls=calls) as gw:
        ran = await gw.run("skills:fan_out", {"items": list(range(10))})
        assert not ran.is_error, ran.text
        assert ran.structured is not None and ran.structured["value"] == [{"result": i * 10} for i in range(10)]
        assert calls.counts["overlap"] == 10 and calls.counts["overlap_most"] == 4
        described = await meta(gw, "describe_skill", {"skill_id": "skills:fan_out"})
        assert described["skill"]["steps"][0]["concurrency"] == 4
        # The first failure stops the rest: no call starts after it, and the lowest failed item is the step's.
        calls.counts.clear()
        failed = await gw.run("skills:fan_out", {"items": list(range(12)), "fail": [1, 2]})
        assert failed.is_error and failed.structured is not None
        error = failed.structured["error"]
        assert error["item_index"] == 1 and "item 1 failed" in error["message"], error
        assert calls.counts["overlap"] <= 4  # (the first four started together; none after the failures)


async def test_a_foreach_over_100000_items_is_a_clear_limit_before_anything_runs(tmp_path: Path) -> None:
    write(tmp_path, "loop_over.yaml", FOREACH)
    write(tmp_path, "loop_result.yaml", FOREACH_RESULT)
    calls = Calls()
    async with skills_gateway(tmp_path, calls=calls) as gw, Client(McpSurface(gw).server) as client:
        big = {"items": [str(i) for i in range(100_000)]}
        error = error_of(await client.call_tool("run_skill", {"skill_id": "loop_over", "inputs": big}))
        assert error["code"] == "invalid_request" and "foreach gives 100,000 items" in error["message"]
        assert "at most 1,000 (skills.max_foreach)" in error["message"] and error["details"]["step_id"] == "each"
        assert calls.counts == {}
        # a list that only a step's result makes long stops at that step, before its calls
        answer = await client.call_tool("run_skill", {"skill_id": "loop_result", "inputs": {"count": 100_000}})
        result = answer.structured_content["result"]
        assert (
            answer.is_error and result["error"]["step_id"] == "each" and "100,000 items" in result["error"]["message"]
        )
        assert calls.counts == {"numbers": 1}
        ok = await client.call_tool("run_skill", {"skill_id": "loop_result", "inputs": {"count": 3}})
        assert ok.structured_content["result"]["value"] == [{"result": "N0"}, {"result": "N1"}, {"result": "N2"}]


async def test_run_skill_limits_narrow_the_configured_ones_and_never_widen_them(tmp_path: Path) -> None:
    write(tmp_path, "loop_over.yaml", FOREACH)
    write(
        tmp_path,
        "slow.yaml",
        """
        name: slow
        steps:
          - {id: quick, tool_id: "t:lookup", args: {word: a}}
          - {id: nap, tool_id: "t:slow", args: {seconds: 5}}
        """,
    )
    async with skills_gateway(tmp_path, max_tool_calls=10) as gw, Client(McpSurface(gw).server) as client:
        five = {"skill_id": "loop_over", "inputs": {"items": list("abcde")}}
        assert not (await client.call_tool("run_skill", five)).is_error
        error = error_of(await client.call_tool("run_skill", {**five, "max_tool_calls": 4}))
        assert "would make 5 tool calls" in error["message"] and "at most 4" in error["message"]
        error = error_of(
            await client.call_tool("run_skill", {**five, "inputs": {"items": list("x" * 11)}, "max_tool_calls": 99})
        )
        assert (
            "at most 10" in error["message"]
        )  # asking for more than the configuration allows gets the configured limit
        error = error_of(await client.call_tool("run_skill", {**five, "max_steps": 0}))
        assert error["code"] == "validation_input"  # schema: max_steps >= 1
        two = await client.call_tool("run_skill", {"skill_id": "slow", "timeout_ms": 200})
        result = two.structured_content["result"]
        assert two.is_error and result["error"]["code"] == "timeout" and result["error"]["step_id"] == "nap"
        assert (
            "within 0.2 s" in result["error"]["message"]
            and "during step 'nap' (2 of 2, t:slow)" in result["error"]["message"]
        )
        assert [r["step_id"] for r in result["results"]] == ["quick", "nap"]


async def test_a_skill_may_call_a_skill_but_a_loop_at_run_time_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", GOOD)
    write(
        tmp_path,
        "outer.yaml",
        """
        name: outer
        steps:
          - {id: inner, tool_id: "skills:good", args: {word: "{{ 'nested' }}"}}
        output: "{{ steps.inner.value.result }}"
        """,
    )
    async with skills_gateway(tmp_path) as gw:
        assert (await gw.run("skills:outer", {})).structured["value"] == "NESTED"
        # a stack that already holds the skill (as a reload in the middle of a run could make) is a loop
        looped = CallContext(meta={"aperture.skill_stack": ("skills:good",)})
        refused = await gw.run("skills:good", {"word": "x"}, looped)
        assert refused.error is not None and "already running around this call" in refused.error.message


# --- who may run what ---------------------------------------------------------------------------------

RULES = [{"tools": "admin:*", "roles": ["admin"]}, {"tools": "skills:secret*", "roles": ["admin"]}]
DEV = Identity(name="ci", method="api_key", roles=frozenset({"dev"}))
ADMIN = Identity(name="root", method="api_key", roles=frozenset({"admin"}))
RESET = """
name: {name}
description: Reset through a skill.
steps:
  - {{id: first, tool_id: "t:lookup", args: {{word: before}}}}
  - {{id: reset, tool_id: "admin:reset"}}
"""


async def test_a_skill_never_grants_a_tool_its_caller_may_not_run(tmp_path: Path) -> None:
    write(tmp_path, "reset.yaml", RESET.format(name="resetter"))
    write(tmp_path, "secret.yaml", RESET.format(name="secret_reset"))
    calls = Calls()
    ops = {"auth": {"enabled": True, "rules": RULES, "local_roles": []}}
    async with skills_gateway(tmp_path, ops=ops, calls=calls) as gw:
        as_dev = CallContext(meta={IDENTITY_KEY: DEV})
        ran = await gw.run("skills:resetter", {}, as_dev)
        assert ran.error is not None and ran.error.code == "tool_not_found" and "reset done" not in ran.text
        assert ran.error.message.startswith("Skill 'resetter', step 'reset' (2 of 2): No tool 'admin:reset'.")
        assert calls.counts == {}  # refused before the first step ran
        with pytest.raises(UnknownToolError, match=r"step 'reset' .*No tool 'admin:reset'"):
            await meta(gw, "plan_skill", {"skill_id": "resetter"}, as_dev)
        listed = await meta(gw, "list_skills", {}, as_dev)
        assert [s["id"] for s in listed["skills"]] == ["skills:resetter"]  # not the secret one
        for name in ("describe_skill", "run_skill"):
            with pytest.raises(UnknownToolError) as hidden:
                await meta(gw, name, {"skill_id": "skills:secret_reset"}, as_dev)
            assert hidden.value.message == (
                "No skill 'skills:secret_reset'. Did you mean: skills:resetter? list_skills shows the skills."
            )
        as_admin = CallContext(meta={IDENTITY_KEY: ADMIN})
        assert (await gw.run("skills:secret_reset", {}, as_admin)).structured["value"] == {"result": "reset done"}


# --- plans and inline skills --------------------------------------------------------------------------


async def test_a_nested_skills_tool_the_caller_may_not_run_stops_the_run_before_its_first_step(tmp_path: Path) -> None:
    write(tmp_path, "reset.yaml", RESET.format(name="resetter"))
    write(
        tmp_path,
        "wrapper.yaml",
        """
        name: wrapper
        steps:
          - {id: look, tool_id: "t:lookup", args: {word: first}}
          - {id: nested, tool_id: "skills:resetter"}
        """,
    )
    calls = Calls()
    ops = {"auth": {"enabled": True, "rules": RULES, "local_roles": []}}
    async with skills_gateway(tmp_path, ops=ops, calls=calls) as gw:
        ran = await gw.run("skills:wrapper", {}, CallContext(meta={IDENTITY_KEY: DEV}))
        assert ran.error is not None and ran.error.code == "tool_not_found"
        assert ran.error.message.startswith(
            "Skill 'wrapper', step 'nested' (2 of 2) → Skill 'resetter', step 'reset' (2 of 2): No tool 'admin:reset'."
        )
        assert ran.error.details["step_id"] == "nested"
        assert calls.counts == {}  # neither the wrapper's first step nor the nested skill's ran
        ok = await gw.run("skills:wrapper", {}, CallContext(meta={IDENTITY_KEY: ADMIN}))
        assert not ok.is_error and calls.counts == {"lookup": 2}


async def test_plan_skill_shows_the_resolved_steps_without_running_them() -> None:
    calls = Calls()
    async with skills_gateway(calls=calls) as gw:
        planned = await meta(gw, "plan_skill", {"skill_id": "publish_note", "inputs": NOTE})
        steps = planned["plan"]["steps"]
        assert steps[0] == {"id": "slug", "tool_id": "toolbox:slugify", "args": {"text": "Hello World"}}
        assert steps[2]["calls"] == 2 and steps[2]["args"] == {"text": "{{ item }}", "separator": "_"}
        assert steps[3]["runs"] is False
    async with skills_gateway() as gw:
        inline = {
            "name": "shout_twice",
            "inputs": {"properties": {"word": {"type": "string"}}},
            "steps": [
                {"id": "one", "tool_id": "t:lookup", "args": {"word": "{{ inputs.word }}"}},
                {"id": "two", "tool_id": "t:lookup", "args": {"word": "{{ steps.one.result }}!"}},
            ],
        }
        planned = await meta(gw, "plan_skill", {"skill": inline, "inputs": {"word": "hi"}})
        assert planned["plan"]["steps"][1] == {
            "id": "two",
            "tool_id": "t:lookup",
            "args": {"word": "{{ steps.one.result }}!"},
            "after": ["one"],
        }


INLINE_BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unknown tool": ({"steps": [{"id": "a", "tool_id": "toolbox:slugfy"}]}, "no tool 'toolbox:slugfy'"),
    "missing input": (
        {"steps": [{"id": "a", "tool_id": "t:lookup", "args": {"word": "{{ inputs.nope }}"}}]},
        "inputs.nope is not a declared input",
    ),
    "later step": (
        {"steps": [{"id": "a", "tool_id": "t:lookup", "args": {"word": "{{ steps.a.result }}"}}]},
        "steps.a is step 1, which has not run yet when step 1 runs",
    ),
    "no steps": ({"steps": []}, "steps: List should have at least 1 item"),
    "unknown key": ({"steps": [{"id": "a", "tool_id": "t:lookup", "argz": {}}]}, "steps[0].argz: unknown key"),
    "unknown skill": (
        {"steps": [{"id": "a", "tool_id": "skills:publish_nte"}]},
        "no skill 'publish_nte' (is its file loading?). Did you mean: skills:publish_note?",
    ),
    "literal of the wrong type": (
        {"steps": [{"id": "a", "tool_id": "toolbox:slugify", "args": {"text": "x", "max_length": [1]}}]},
        "argument 'max_length' must be integer",
    ),
}


@pytest.mark.parametrize("case", list(INLINE_BAD), ids=list(INLINE_BAD))
async def test_an_inline_skill_gets_the_checks_a_file_gets(case: str) -> None:
    definition, reason = INLINE_BAD[case]
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        for tool in ("run_skill", "plan_skill"):
            error = error_of(await client.call_tool(tool, {"skill": {"name": "inline", **definition}}))
            assert error["code"] == "invalid_request" and reason in error["message"], error["message"]
        answer = await client.call_tool(
            "run_skill",
            {"skill": {"name": "ok", "steps": [{"id": "a", "tool_id": "t:lookup", "args": {"word": "fine"}}]}},
        )
        assert answer.structured_content["result"]["value"] == {"result": "FINE"}


async def test_skill_id_and_skill_are_one_or_the_other() -> None:
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        for args in ({}, {"skill_id": "publish_note", "skill": {"name": "x", "steps": []}}):
            error = error_of(await client.call_tool("run_skill", args))
            assert error["code"] == "invalid_request" and "either skill_id" in error["message"]


# --- hot reload ---------------------------------------------------------------------------------------


async def test_skills_reload_when_files_change_and_a_broken_edit_keeps_the_last_good_version(tmp_path: Path) -> None:
    path = write(tmp_path, "good.yaml", GOOD)
    async with skills_gateway(tmp_path) as gw:
        assert gw.skills is not None
        assert (await gw.run("skills:good", {"word": "v1"})).structured["value"] == {"result": "V1"}
        path.write_text(GOOD.replace("Upper-case a word.", "Shout a word back."))
        await until(gw, lambda: gw.registry.snapshot.tools["skills:good"].description == "Shout a word back.")
        # broken edits: not YAML, then a step reading a later one: the last good version serves
        for broken in ("name: good\nsteps: [oops\n", GOOD.replace("{{ inputs.word }}", "{{ steps.later.x }}")):
            path.write_text(broken)
            await reloaded(gw)
            assert (await gw.run("skills:good", {"word": "still"})).structured["value"] == {"result": "STILL"}
            assert gw.skills.report is not None and gw.skills.report.errors
            assert any("kept the last good version of skill 'good'" in p.reason for p in gw.skills.report.problems)
        path.write_text(GOOD.replace("t:lookup", "t:append"))
        await until(gw, lambda: not gw.skills.report.errors if gw.skills and gw.skills.report else False)
        assert (await gw.run("skills:good", {"word": "new"})).structured["value"] == {"result": "new"}
        write(tmp_path, "second.yaml", GOOD.replace("name: good", "name: second"))
        await until(gw, lambda: "skills:second" in gw.registry.snapshot.tools)
        path.unlink()
        await until(gw, lambda: "skills:good" not in gw.registry.snapshot.tools)


async def test_clients_hear_when_skill_tools_appear(tmp_path: Path) -> None:
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            heard.set()

    async with skills_gateway(tmp_path) as gw, anyio.create_task_group() as tg:
        surface = McpSurface(gw)
        tg.start_soon(surface.notify_changes)
        async with Client(surface.server, mode="legacy", message_handler=on_message) as client:
            assert "run_skill" not in {t.name for t in (await client.list_tools()).tools}
            write(tmp_path, "good.yaml", GOOD)
            with anyio.fail_after(5):
                await heard.wait()
            assert {t.name for t in (await client.list_tools()).tools} >= SKILL_TOOLS
        tg.cancel_scope.cancel()


async def test_a_copy_of_the_example_directory_serves_both_kinds(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE_SKILLS, tmp_path / "skills")
    async with skills_gateway(tmp_path / "skills") as gw:
        assert {"skills:publish_note", "skills:release-notes"} <= set(gw.registry.snapshot.tools)
        assert gw.skills is not None and gw.skills.report is not None and not gw.skills.report.problems


async def test_limits_travel_only_to_the_skill_they_were_given_for() -> None:
    narrowed = Limits(max_steps=1)
    async with skills_gateway() as gw:
        refused = await gw.run("skills:publish_note", NOTE, CallContext(meta={LIMITS_KEY: narrowed}))
        assert refused.error is not None and "has 4 steps; a run may take at most 1" in refused.error.message


def test_the_skills_section_is_checked_with_the_configuration(tmp_path: Path) -> None:
    clash = {"backends": [{"name": "skills", "kind": "python", "module": "toolbox"}], "skills": {"paths": ["s"]}}
    with pytest.raises(ConfigError, match=r"skills\.namespace 'skills' is also a backend's name"):
        parse_config(clash)
    with pytest.raises(ConfigError, match=r"skills\.paths: Field required"):
        parse_config({"skills": {}})
    config = write(tmp_path, "aperture.yaml", "skills: {paths: [mine/], namespace: recipes, max_foreach: 5}\n")
    loaded = load_config(config)
    assert loaded.skills is not None and loaded.resolve(loaded.skills.paths[0]) == tmp_path / "mine"


async def test_a_missing_skills_directory_is_reported_and_the_gateway_serves(tmp_path: Path) -> None:
    async with skills_gateway(tmp_path / "nowhere", tmp_path) as gw:
        assert gw.skills is not None and gw.skills.report is not None
        assert [p.reason for p in gw.skills.report.errors] == [
            "the skills directory does not exist: create it or fix skills.paths in the configuration"
        ]
        assert (await gw.run("toolbox:slugify", {"text": "A B"})).structured == {"result": "a-b"}


STEP = {"id": "a", "tool_id": "t:lookup", "args": {"word": "x"}}
RECIPE_PROBLEMS: dict[str, tuple[dict[str, Any], str]] = {
    "bad step id": ({"steps": [{**STEP, "id": "1st"}]}, "steps[0].id: a step id is a letter or _"),
    "same step id": ({"steps": [STEP, STEP]}, "steps[1].id: step 1 has the same id"),
    "bad tool id": ({"steps": [{**STEP, "tool_id": "lookup"}]}, "steps[0].tool_id: it has no namespace"),
    "bad name": ({"name": "two words", "steps": [STEP]}, "name: the name contains characters outside"),
    "inputs not an object": ({"inputs": {"type": "string"}, "steps": [STEP]}, "inputs: the inputs schema describes"),
    "inputs not a schema": ({"inputs": {"properties": {"a": {"type": 3}}}, "steps": [STEP]}, "not a valid JSON Schema"),
    "previous at the start": (
        {"steps": [{**STEP, "args": {"word": "{{ previous.result }}"}}]},
        "'previous' is the step before, and the first step has none",
    ),
    "when does not parse": ({"steps": [{**STEP, "when": "{{ a[ }}"}]}, "steps[0].when: 'a[' is not a valid"),
    "foreach reads a later step": (
        {"steps": [{**STEP, "foreach": "{{ steps.b.result }}"}, {**STEP, "id": "b"}]},
        "steps[0].foreach: steps.b is step 2",
    ),
    "concurrency without foreach": (
        {"steps": [{**STEP, "concurrency": 3}]},
        "concurrency applies to a foreach step; add foreach, or remove it",
    ),
    "concurrency of 100": (
        {"steps": [{**STEP, "foreach": "{{ inputs.x }}", "concurrency": 100}]},
        "steps[0].concurrency",
    ),
    "item outside foreach": ({"steps": [{**STEP, "args": {"word": "{{ item }}"}}]}, "'item' is not something"),
    "output reads no step": ({"steps": [STEP], "output": {"x": "{{ steps.z }}"}}, "output.x: steps.z names no step"),
}


@pytest.mark.parametrize("case", list(RECIPE_PROBLEMS), ids=list(RECIPE_PROBLEMS))
def test_a_recipe_is_checked_on_its_own_when_it_loads(case: str) -> None:
    definition, reason = RECIPE_PROBLEMS[case]
    recipe, problems = compile_recipe({"name": "r", **definition})
    assert recipe is None and any(reason in p.reason for p in problems), [p.reason for p in problems]


async def test_a_recipe_longer_than_max_steps_does_not_load(tmp_path: Path) -> None:
    steps = "\n".join(f"  - {{id: s{i}, tool_id: 't:lookup', args: {{word: x}}}}" for i in range(4))
    write(tmp_path, "long.yaml", f"name: long\nsteps:\n{steps}\n")
    (tmp_path / "list.yaml").write_text("- just\n- a list\n")
    async with skills_gateway(tmp_path, max_steps=3) as gw:
        assert gw.skills is not None and gw.skills.report is not None
        reasons = sorted(p.reason for p in gw.skills.report.errors)
        assert reasons[0].startswith("a recipe file holds a mapping")
        assert reasons[1].startswith("the recipe has 4 steps; skills.max_steps allows 3")
