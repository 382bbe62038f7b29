"""Skills over a real `aperture serve` on streamable HTTP with two API keys: a skill never runs a tool its caller
may not, and every bad skill input gets a clear error while the gateway keeps serving."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import FIXTURES, ROOT
from tests.integration.conftest import serving_http
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

DEV_KEY = "dev-" + "d" * 30
ADMIN_KEY = "admin-" + "a" * 30
SKILLS = {
    "good.yaml": """
name: good
description: Slug of a title.
inputs: {properties: {title: {type: string}}, required: [title]}
steps:
  - {id: slug, tool_id: "toolbox:slugify", args: {text: "{{ inputs.title }}"}}
output: "{{ steps.slug.result }}"
""",
    "whoami.yaml": """
name: whoami
description: Say which process answers, through an admin-only tool.
steps:
  - {id: first, tool_id: "toolbox:slugify", args: {text: "before"}}
  - {id: ask, tool_id: "ops:whoami", args: {word: "hello"}}
""",
    "not_yaml.yaml": "name: not_yaml\nsteps: [\n  - oops: [\n",
    "unknown_tool.yaml": "name: unknown_tool\nsteps:\n  - {id: a, tool_id: 'toolbox:slugfy', args: {text: x}}\n",
    "missing_input.yaml": "name: missing_input\nsteps:\n"
    "  - {id: a, tool_id: 'toolbox:slugify', args: {text: '{{ inputs.x }}'}}\n",
    "later_step.yaml": "name: later_step\nsteps:\n"
    "  - {id: a, tool_id: 'toolbox:slugify', args: {text: '{{ steps.b.result }}'}}\n"
    "  - {id: b, tool_id: 'toolbox:slugify', args: {text: x}}\n",
    "loop.yaml": "name: loop\nsteps:\n  - {id: again, tool_id: 'skills:loop'}\n",
}


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("skills-gateway")
    for name, text in SKILLS.items():
        (root / "skills" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "skills" / name).write_text(text.lstrip())
    shutil.copytree(ROOT / "examples" / "skills" / "release-notes", root / "skills" / "release-notes")
    keys = [
        {"name": "dev", "sha256": hashlib.sha256(DEV_KEY.encode()).hexdigest(), "roles": ["dev"]},
        {"name": "admin", "sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(), "roles": ["admin"]},
    ]
    config = {
        "backends": [
            {"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(ROOT / "examples")},
            {"name": "ops", "kind": "python", "module": "ops_tools", "path": str(FIXTURES)},
        ],
        "skills": {"paths": ["skills"]},
        "search": {"strategy": "bm25"},
        "ops": {"auth": {"enabled": True, "api_keys": keys, "rules": [{"tools": "ops:*", "roles": ["admin"]}]}},
    }
    (root / "aperture.yaml").write_text(yaml.safe_dump(config))
    with serving_http(root / "aperture.yaml") as url:
        yield url


@asynccontextmanager
async def client_with(url: str, key: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"x-api-key": key}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def serving(client: Client) -> None:
    """The gateway still answers, and runs a skill."""
    answer = await client.call_tool("run_skill", {"skill_id": "good", "inputs": {"title": "Still Here"}})
    assert answer.structured_content["result"]["value"] == "still-here", text_of(answer)


async def test_a_skill_step_a_caller_may_not_run_is_an_unknown_tool_for_it(gateway_url: str) -> None:
    async with client_with(gateway_url, DEV_KEY) as dev, client_with(gateway_url, ADMIN_KEY) as admin:
        for answer in (
            await dev.call_tool("run_skill", {"skill_id": "whoami"}),
            await run(dev, "skills:whoami", {}),
        ):
            error = error_of(answer)
            assert error["code"] == "tool_not_found" and "step 'ask' (2 of 2): No tool 'ops:whoami'" in error["message"]
            assert "from" not in text_of(answer)  # the tool's answer never came back
        dev_skills = (await dev.call_tool("list_skills", {})).structured_content["skills"]
        assert "skills:good" in [s["id"] for s in dev_skills]
        ran = await admin.call_tool("run_skill", {"skill_id": "whoami"})
        assert ran.structured_content["result"]["value"]["result"].startswith("hello from ")
        await serving(dev)


BAD_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "not YAML": ({"skill_id": "not_yaml"}, "not valid YAML"),
    "unknown tool": ({"skill_id": "unknown_tool"}, "no tool 'toolbox:slugfy'. Did you mean: toolbox:slugify?"),
    "missing input": ({"skill_id": "missing_input"}, "inputs.x is not a declared input"),
    "later step": ({"skill_id": "later_step"}, "steps.b is step 2, which has not run yet when step 1 runs"),
    "loop": ({"skill_id": "loop"}, "calls itself (skills:loop → skills:loop)"),
    "unknown skill": ({"skill_id": "nope"}, "No skill 'nope'."),
    "inline unknown tool": (
        {"skill": {"name": "x", "steps": [{"id": "a", "tool_id": "toolbox:nope"}]}},
        "no tool 'toolbox:nope'",
    ),
    "inline later step": (
        {
            "skill": {
                "name": "x",
                "steps": [{"id": "a", "tool_id": "toolbox:slugify", "args": {"text": "{{ steps.a }}"}}],
            }
        },
        "has not run yet",
    ),
    "inline calls a skill that does not load": (
        {"skill": {"name": "x", "steps": [{"id": "a", "tool_id": "skills:loop"}]}},
        "no skill 'loop'",
    ),
    "foreach over 100,000 items": (
        {
            "skill": {
                "name": "many",
                "inputs": {"properties": {"items": {"type": "array"}}},
                "steps": [
                    {
                        "id": "each",
                        "tool_id": "toolbox:slugify",
                        "foreach": "{{ inputs.items }}",
                        "args": {"text": "{{ item }}"},
                    }
                ],
            },
            "inputs": {"items": ["x"] * 100_000},
        },
        "foreach gives 100,000 items; a step may loop over at most 1,000",
    ),
}


async def test_every_bad_skill_input_gets_a_clear_error_and_the_gateway_keeps_serving(gateway_url: str) -> None:
    async with client_with(gateway_url, DEV_KEY) as client:
        for case, (args, reason) in BAD_INPUTS.items():
            error = error_of(await client.call_tool("run_skill", args))
            assert reason in error["message"], (case, error["message"])
            await serving(client)


async def test_instruction_skill_files_are_resources_over_http(gateway_url: str) -> None:
    async with client_with(gateway_url, DEV_KEY) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "skill://release-notes/template.md" in uris
        read = await client.read_resource("skill://release-notes/checklist.md")
        assert "migration step" in getattr(read.contents[0], "text", "")
