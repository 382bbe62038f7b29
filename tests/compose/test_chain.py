"""run_chain: steps in order through the gateway's run, the previous result passed on, the first failure named,
limits on steps and time; through the official MCP client, in memory and over HTTP with API keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from aperture.compose import ChainSettings, TemplateError, fill_templates
from aperture.config import Config, SearchConfig, load_config, parse_config
from aperture.execution import BackendRegistry, PythonBackend, ToolOutput
from aperture.gateway import Gateway
from aperture.model import ConfigError
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES, ROOT, TEST_CONFIG
from tests.integration.conftest import serving_http
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

SECRET = "chain-secret-value-0042"


def steps_backend(calls: list[str]) -> PythonBackend:
    """Tools made for chains: one that takes `previous`, one that answers text only, one that counts calls."""
    backend = PythonBackend("steps")

    @backend.tool
    def annotate(previous: Any = None, note: str = "") -> dict[str, Any]:
        """Say what came before, with a note."""
        calls.append("annotate")
        return {"got": previous, "note": note}

    @backend.tool
    def plain(text: str):  # type: ignore[no-untyped-def]  # no return type: text content, no structured result
        """Answer with text only."""
        calls.append("plain")
        return ToolOutput(content=(mcp_types.TextContent(text=f"plain {text}"),))

    @backend.tool
    def count(word: str = "x") -> str:
        """Count the call."""
        calls.append("count")
        return word

    return backend


@asynccontextmanager
async def chain_client(calls: list[str] | None = None, **chain: Any) -> AsyncIterator[Client]:
    """The test gateway (toolbox, faulty) plus the `steps` tools, with `chain:` settings, behind an MCP client."""
    registry = BackendRegistry()
    await registry.register(steps_backend(calls if calls is not None else []))
    config = load_config(TEST_CONFIG).model_copy(
        update={"chain": ChainSettings(**chain), "search": SearchConfig(strategy="bm25"), "secret_values": (SECRET,)}
    )
    async with Gateway(config, registry=registry) as gateway, Client(McpSurface(gateway).server) as client:
        yield client


def step(tool_id: str, args: dict[str, Any] | None = None, *, previous: bool = False) -> dict[str, Any]:
    """One step of a chain as an agent writes it."""
    out: dict[str, Any] = {"tool_id": tool_id}
    if args is not None:
        out["args"] = args
    if previous:
        out["use_previous"] = True
    return out


async def chain(client: Client, steps: list[dict[str, Any]], **options: Any) -> mcp_types.CallToolResult:
    return await client.call_tool("run_chain", {"steps": steps, **options})


def answer(result: mcp_types.CallToolResult) -> dict[str, Any]:
    """The chain's result object; its text is the same JSON."""
    data: dict[str, Any] = result.structured_content
    assert json.loads(text_of(result)) == data
    return data


async def test_each_step_gets_the_previous_result_through_templates_typed_or_as_text() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                step("toolbox:slugify", {"text": "Hello Chain World"}),
                step("toolbox:hash_text", {"text": "{{ previous.result }}"}, previous=True),
                step("toolbox:text_statistics", {"text": "sha {{ previous.result }}"}, previous=True),
                step("toolbox:calculate", {"expression": "{{previous.words}} * 10"}, previous=True),
            ],
        )
        assert not result.is_error, text_of(result)
        data = answer(result)
        digest = hashlib.sha256(b"hello-chain-world").hexdigest()
        results = data["results"]
        assert [r["structured"] for r in results[:2]] == [{"result": "hello-chain-world"}, {"result": digest}]
        assert results[2]["structured"]["words"] == 2
        assert data["final"] == {"result": 20.0} and "error" not in data
        assert all(r["duration_ms"] >= 0 and r["backend"] == {"kind": "python", "name": "toolbox"} for r in results)


async def test_a_typed_template_keeps_the_value_an_object_or_a_number() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                step("toolbox:summarize_numbers", {"values": [3, 1, 2]}),
                step("toolbox:json_query", {"document": "{{ previous }}", "path": "maximum"}, previous=True),
            ],
        )
        # json_query answers text only (its return type is Any): the chain passes the text on.
        assert answer(result)["results"][1]["text"] == "3.0", text_of(result)


async def test_a_tool_with_a_previous_parameter_receives_the_previous_result_there() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                {"tool_id": "toolbox:slugify", "args": {"text": "A B"}},
                {"tool_id": "steps:annotate", "args": {"note": "from {{ previous.result }}"}, "use_previous": True},
                {"tool_id": "steps:plain", "args": {"text": "t"}},
                {"tool_id": "steps:annotate", "use_previous": True},
                {"tool_id": "steps:annotate", "args": {"note": "alone"}},
            ],
        )
        steps = answer(result)["results"]
        assert steps[1]["structured"] == {"got": {"result": "a-b"}, "note": "from a-b"}, text_of(result)
        # A step without a structured result passes its text; its own entry carries the text.
        assert steps[2] == {**steps[2], "text": "plain t"} and "structured" not in steps[2]
        assert steps[3]["structured"]["got"] == "plain t"
        assert steps[4]["structured"] == {"got": None, "note": "alone"}  # no use_previous: nothing sent


async def test_without_use_previous_arguments_go_to_the_tool_as_given() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                {"tool_id": "faulty:echo", "args": {"text": "first"}},
                {"tool_id": "faulty:echo", "args": {"text": "{{ previous.result }} stays"}},
            ],
        )
        assert answer(result)["final"] == {"result": "{{ previous.result }} stays"}


async def test_the_chain_stops_at_the_first_failing_step_and_names_it_with_its_cause() -> None:
    calls: list[str] = []
    async with chain_client(calls) as client:
        result = await chain(
            client,
            [
                {"tool_id": "steps:count", "args": {"word": "one"}},
                {"tool_id": "faulty:explode", "args": {"message": "kaput"}},
                {"tool_id": "steps:count", "args": {"word": "three"}},
            ],
        )
        assert result.is_error
        data = answer(result)
        assert calls == ["count"] and len(data["results"]) == 2
        error = data["error"]
        assert error["code"] == "chain_step_failed" and error["step_index"] == 1
        assert error["details"]["cause_code"] == "execution_failed"
        assert error["message"].startswith("Step 2 of 3 (step_index 1, 'faulty:explode') failed: ")
        assert "kaput" in error["message"]
        assert data["results"][1]["error"]["code"] == "execution_failed"
        assert data["final"] == {"result": "one"}  # the last successful step's value


async def test_an_unknown_tool_fails_its_step_with_the_error_run_tool_gives() -> None:
    async with chain_client() as client:
        result = await chain(client, [step("toolbox:slugify", {"text": "x"}), step("toolbox:hsh_text")])
        failed = answer(result)["results"][1]
        alone = error_of(await run(client, "toolbox:hsh_text", {}))
        assert failed["error"]["code"] == "tool_not_found" and failed["error"]["message"] == alone["message"]
        assert "toolbox:hash_text" in failed["error"]["message"] and "backend" not in failed


async def test_a_template_that_finds_nothing_names_the_step_the_template_and_the_keys_there_are() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                {"tool_id": "toolbox:slugify", "args": {"text": "x"}},
                {"tool_id": "toolbox:hash_text", "args": {"text": "{{ previous.slug }}"}, "use_previous": True},
            ],
        )
        error = answer(result)["error"]
        assert error["step_index"] == 1 and error["details"]["cause_code"] == "validation_input"
        assert "Step 2 of 2" in error["message"] and "'{{ previous.slug }}' in args.text" in error["message"]
        assert "no key 'slug' (its keys: result)" in error["message"]


async def test_a_previous_result_with_nowhere_to_go_is_refused_with_a_template_to_use() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                {"tool_id": "toolbox:slugify", "args": {"text": "x"}},
                {"tool_id": "toolbox:hash_text", "use_previous": True},
            ],
        )
        message = answer(result)["results"][1]["error"]["message"]
        assert "no 'previous' parameter" in message and '{"text": "{{ previous.result }}"}' in message


async def test_a_chain_of_1000_steps_is_refused_before_any_step_runs() -> None:
    calls: list[str] = []
    async with chain_client(calls) as client:
        result = await chain(client, [{"tool_id": "steps:count"}] * 1000)
        error = error_of(result)
        assert error["code"] == "invalid_request" and calls == []
        assert "1,000 steps" in error["message"] and "at most 32" in error["message"] and "Split" in error["message"]
        assert not (await run(client, "steps:count", {})).is_error


async def test_max_steps_comes_from_the_configuration() -> None:
    async with chain_client(max_steps=2) as client:
        refused = error_of(await chain(client, [{"tool_id": "steps:count"}] * 3))
        assert "at most 2" in refused["message"]
        assert not (await chain(client, [{"tool_id": "steps:count"}] * 2)).is_error


async def test_a_step_that_times_out_stops_the_chain_and_the_gateway_keeps_serving() -> None:
    async with chain_client() as client:  # faulty's calls may take 1 s
        with anyio.fail_after(10):
            result = await chain(client, [step("faulty:echo", {"text": "a"}), step("faulty:hang")])
        error = answer(result)["error"]
        assert error["step_index"] == 1 and error["details"]["cause_code"] == "timeout"
        assert "'faulty:hang'" in error["message"] and "did not finish within 1 s" in error["message"]
        assert not (await run(client, "faulty:echo", {"text": "still here"})).is_error


async def test_the_whole_chain_has_a_time_limit_naming_the_step_it_stopped() -> None:
    async with chain_client(timeout=0.3) as client:
        with anyio.fail_after(10):
            result = await chain(
                client,
                [
                    {"tool_id": "faulty:echo", "args": {"text": "a"}},
                    {"tool_id": "faulty:hang"},  # its own timeout (1 s) is longer than what the chain has left
                    {"tool_id": "faulty:echo", "args": {"text": "never"}},
                ],
            )
        data = answer(result)
        assert len(data["results"]) == 2 and data["error"]["step_index"] == 1
        message = data["error"]["message"]
        assert "Step 2 ('faulty:hang') was stopped" in message and "at most 0.3 s (chain.timeout)" in message
        assert data["error"]["details"]["cause_code"] == "timeout"
        assert not (await chain(client, [{"tool_id": "faulty:echo", "args": {"text": "b"}}])).is_error


async def test_progress_reports_step_i_of_n() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with chain_client() as client:
        steps = [
            {"tool_id": "faulty:echo", "args": {"text": "a"}},
            {"tool_id": "faulty:progress", "args": {"steps": 2}},
            {"tool_id": "faulty:echo", "args": {"text": "c"}},
        ]
        result = await client.call_tool("run_chain", {"steps": steps}, progress_callback=on_progress)
        assert not result.is_error, text_of(result)
    values = [p for p, _, _ in seen]
    assert values == sorted(set(values)), seen  # strictly increasing, as MCP asks
    assert (0, 3, "step 1 of 3: faulty:echo") in seen and (2, 3, "step 3 of 3: faulty:echo") in seen
    assert seen[-1] == (3, 3, "done")
    assert any(1 < p < 2 for p in values)  # the progress step's own reports, as a share of its step


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"steps": [{"args": {}}]}, "missing required argument 'steps[0].tool_id'"),
        ({"steps": []}, "steps is empty"),
        ({"steps": "toolbox:slugify"}, "argument 'steps' must be array of object"),
        ({"steps": [{"tool": "toolbox:slugify"}]}, "argument 'steps[0]' has unknown keys: 'tool'"),
        ({"steps": [step("toolbox:slugify", previous=True)]}, "The first step (step_index 0) has use_previous"),
    ],
    ids=["missing tool_id", "empty steps", "steps not a list", "unknown key", "use_previous first"],
)
async def test_invalid_arguments_get_a_clear_error_and_nothing_runs(arguments: dict[str, Any], says: str) -> None:
    calls: list[str] = []
    async with chain_client(calls) as client:
        error = error_of(await client.call_tool("run_chain", arguments))
        assert error["code"] in ("validation_input", "invalid_request") and says in error["message"], error
        assert calls == []
        assert not (await run(client, "steps:count", {})).is_error


async def test_include_backends_and_include_tools_add_what_they_say() -> None:
    async with chain_client() as client:
        steps = [{"tool_id": "toolbox:slugify", "args": {"text": "x"}}]
        plain = answer(await chain(client, steps, include_backends=False))["results"][0]
        assert "backend" not in plain and "tool" not in plain
        full = answer(await chain(client, steps, include_tools=True))["results"][0]
        assert full["backend"] == {"kind": "python", "name": "toolbox"}
        assert full["tool"]["id"] == "toolbox:slugify" and "text" in full["tool"]["parameters"]
        assert "input_schema" not in full["tool"]  # the summary, not the schema


async def test_step_results_and_errors_are_redacted_as_run_tool_redacts_them() -> None:
    async with chain_client() as client:
        result = await chain(
            client,
            [
                {"tool_id": "faulty:echo", "args": {"text": f"key={SECRET}"}},
                {"tool_id": "faulty:explode", "args": {"message": "{{ previous.result }}"}, "use_previous": True},
            ],
        )
        assert SECRET not in json.dumps(result.model_dump(mode="json")), text_of(result)
        assert "key=" in answer(result)["results"][0]["structured"]["result"]


async def test_the_run_chain_listing_is_not_read_only_and_has_described_arguments() -> None:
    async with chain_client() as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}["run_chain"]
        assert not (listed.annotations and listed.annotations.read_only_hint)  # it runs tools: not read-only
        arguments = listed.input_schema["properties"]
        step_arguments = arguments["steps"]["items"]["properties"]
        assert set(step_arguments) == {"tool_id", "args", "use_previous"} and "$ref" not in json.dumps(arguments)
        assert all(p.get("description") for p in [*arguments.values(), *step_arguments.values()])


def test_the_chain_section_of_the_configuration_is_checked() -> None:
    assert parse_config({"chain": {"max_steps": 5, "timeout": 12}}).chain == ChainSettings(max_steps=5, timeout=12)
    assert Config().chain.max_steps == 32
    for bad in ({"max_steps": 0}, {"timeout": 0}, {"steps": 3}):
        with pytest.raises(ConfigError, match="chain"):
            parse_config({"chain": bad})


@pytest.mark.parametrize(
    ("args", "previous", "filled"),
    [
        ({"a": "{{ previous }}"}, {"x": 1}, {"a": {"x": 1}}),
        ({"a": "{{previous.x}}"}, {"x": 1}, {"a": 1}),
        ({"a": "n={{ previous.x }}"}, {"x": 1}, {"a": "n=1"}),
        ({"a": "{{ previous.items[1].k }}|{{ previous.items.0.k }}"}, {"items": [{"k": "p"}, {"k": 2}]}, {"a": "2|p"}),
        ({"a": ["{{ previous.x }}", {"b": "{{ previous.y }}"}]}, {"x": True, "y": None}, {"a": [True, {"b": None}]}),
        ({"a": "obj {{ previous }}"}, {"x": [1]}, {"a": 'obj {"x": [1]}'}),
        ({"a": "{{ other }} {{previousness}}", "n": 3}, {"x": 1}, {"a": "{{ other }} {{previousness}}", "n": 3}),
        ({"a": "{{ previous }}!"}, "text", {"a": "text!"}),
    ],
    ids=["whole", "key typed", "in text", "indexes", "nested", "object as json", "not templates", "text previous"],
)
def test_templates_fill_from_the_previous_value(args: dict[str, Any], previous: Any, filled: dict[str, Any]) -> None:
    assert fill_templates(args, previous)[0] == filled


@pytest.mark.parametrize(
    ("template", "previous", "reason"),
    [
        ("{{ previous.x.y }}", {"x": 1}, "previous.x is a int, not an object"),
        ("{{ previous.items[2] }}", {"items": [1]}, "previous.items has 1 items"),
        ("{{ previous.a }}", "text", "'{{ previous }}' is that text"),
        ("{{ previous.a }}", None, "returned no result"),
        ("{{ previous..a }}", {"a": 1}, "is not one this chain understands"),
    ],
    ids=["into a number", "past the end", "into text", "no previous", "malformed"],
)
def test_a_template_that_cannot_be_filled_says_why(template: str, previous: Any, reason: str) -> None:
    with pytest.raises(TemplateError) as raised:
        fill_templates({"a": {"b": template}}, previous)
    assert raised.value.where == "args.a.b" and raised.value.template == template and reason in raised.value.reason


def test_templates_cannot_make_a_text_of_unbounded_size() -> None:
    with pytest.raises(TemplateError, match="over 1,000,000 characters"):
        fill_templates({"a": "{{ previous }}" * 2000}, "x" * 1000)


async def test_over_http_a_restricted_caller_gets_from_a_chain_step_what_run_tool_answers(tmp_path: Path) -> None:
    # A real `aperture serve` over streamable HTTP; each caller is whoever its API key says.
    dev_key, admin_key = "k-dev-" + "d" * 30, "k-admin-" + "a" * 30
    config = {
        "backends": [
            {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")},
            {"name": "ops", "kind": "python", "module": "ops_tools", "path": str(FIXTURES)},
        ],
        "search": {"strategy": "bm25"},
        "ops": {
            "auth": {
                "enabled": True,
                "api_keys": [
                    {"name": "dev", "sha256": hashlib.sha256(dev_key.encode()).hexdigest(), "roles": ["dev"]},
                    {"name": "root", "sha256": hashlib.sha256(admin_key.encode()).hexdigest(), "roles": ["admin"]},
                ],
                "rules": [{"tools": "ops:*", "roles": ["admin"]}],
            }
        },
    }
    path = tmp_path / "aperture.yaml"
    path.write_text(yaml.safe_dump(config))
    steps = [
        step("toolbox:slugify", {"text": "Hi There"}),
        step("ops:whoami", {"word": "{{ previous.result }}"}, previous=True),
    ]
    with serving_http(path) as url:
        async with (
            httpx2.AsyncClient(headers={"x-api-key": dev_key}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as dev,
        ):
            result = await chain(dev, steps, include_tools=True)
            data = answer(result)
            hidden = data["results"][1]
            alone = error_of(await run(dev, "ops:whoami", {"word": "hi-there"}))
            assert result.is_error and hidden["error"] == {k: v for k, v in alone.items() if v is not None}
            assert "backend" not in hidden and "tool" not in hidden  # nothing about the tool beyond run_tool's error
            refused = error_of(await chain(dev, [step("toolbox:slugify", {"text": "x"})] * 1000))
            assert "at most 32" in refused["message"]  # refused before anything runs; the gateway serves on
            for miss in ("ops:whoam", "op:whoami"):  # a typo: unknown, and no hidden id suggested
                missed = answer(await chain(dev, [{"tool_id": miss, "args": {"word": "x"}}]))["results"][0]["error"]
                assert missed["code"] == "tool_not_found" and "ops:whoami" not in json.dumps(missed), missed
                assert missed["message"] == error_of(await run(dev, miss, {"word": "x"}))["message"]
        async with (
            httpx2.AsyncClient(headers={"x-api-key": admin_key}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as admin,
        ):
            result = await chain(admin, steps)
            assert not result.is_error and answer(result)["final"]["result"].startswith("hi-there from ")
