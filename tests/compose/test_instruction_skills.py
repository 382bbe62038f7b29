"""Instruction skills (SKILL.md folders): found by search, their body at describe_tool full, their files as
resources; nothing outside the skill's folder is ever listed or read. Through the official MCP client."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mcp_types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from aperture.compose.skills import InstructionSkill, parse_instruction_skill, read_file
from aperture.model import InvalidRequestError
from aperture.surface.mcp import McpSurface
from tests.compose.skill_gateways import EXAMPLE_SKILLS, skills_gateway, write
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio

SKILL_MD = """
---
name: {name}
description: {description}
---
# {name}

Follow the steps in `steps.md`.
"""


def skill_folder(root: Path, name: str, description: str = "Do a careful thing.") -> Path:
    folder = root / name
    write(folder, "SKILL.md", SKILL_MD.format(name=name, description=description))
    write(folder, "steps.md", "1. first\n2. second\n")
    return folder


async def test_an_instruction_skill_is_found_described_and_run_like_a_tool() -> None:
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        found = (
            await client.call_tool("search_tools", {"query": "draft release notes for a changelog"})
        ).structured_content
        assert found["tools"][0]["id"] == "skills:release-notes"
        full = await client.call_tool("describe_tool", {"tool_id": "skills:release-notes", "detail_level": "full"})
        doc = full.structured_content
        assert doc["instructions"].startswith("# Writing release notes") and "template.md" in doc["instructions"]
        assert doc["resources"] == ["skill://release-notes/checklist.md", "skill://release-notes/template.md"]
        summary = await client.call_tool(
            "describe_tool", {"tool_id": "skills:release-notes", "detail_level": "summary"}
        )
        assert "instructions" not in summary.structured_content  # the body costs tokens only at full
        ran = await run(client, "skills:release-notes", {})
        assert text_of(ran) == doc["instructions"] and not ran.is_error
        described = await client.call_tool("describe_skill", {"skill_id": "release-notes"})
        assert described.structured_content["skill"]["kind"] == "instructions"
        plan = await client.call_tool("plan_skill", {"skill_id": "release-notes"})
        assert plan.structured_content["plan"]["steps"] == []


async def test_the_files_beside_skill_md_are_listed_and_readable_as_resources() -> None:
    async with skills_gateway() as gw, Client(McpSurface(gw).server) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert set(listed) == {"skill://release-notes/checklist.md", "skill://release-notes/template.md"}
        assert listed["skill://release-notes/template.md"].mime_type == "text/markdown"
        read = await client.read_resource("skill://release-notes/template.md")
        content = read.contents[0]
        assert isinstance(content, mcp_types.TextResourceContents)
        assert content.text == (EXAMPLE_SKILLS / "release-notes" / "template.md").read_text()


@pytest.fixture
def escaping(tmp_path: Path) -> Path:
    """A skill folder with a symlinked file and folder leading outside it, and a symlink that stays inside."""
    outside = tmp_path / "outside"
    write(outside, "secret.txt", "the password is swordfish\n")
    root = tmp_path / "skills"
    folder = skill_folder(root, "careful")
    os.symlink(outside / "secret.txt", folder / "leak.txt")
    os.symlink(outside, folder / "leakdir")
    os.symlink(folder / "steps.md", folder / "alias.md")
    return root


URIS = [
    "skill://careful/leak.txt",
    "skill://careful/leakdir/secret.txt",
    "skill://careful/../outside/secret.txt",
    "skill://careful/%2e%2e/%2e%2e/outside/secret.txt",
    "skill://careful//etc/passwd",
]


async def test_nothing_outside_the_skills_folder_is_listed_or_read(escaping: Path) -> None:
    async with skills_gateway(escaping) as gw, Client(McpSurface(gw).server) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert listed == {"skill://careful/alias.md", "skill://careful/steps.md"}  # a link inside is fine
        assert gw.skills is not None and gw.skills.report is not None
        refused = [p for p in gw.skills.report.problems if "leads outside the skill's folder" in p.reason]
        assert {p.path.name for p in refused} == {"leak.txt", "leakdir"} and all(
            p.severity == "warning" for p in refused
        )
        for uri in URIS:
            with pytest.raises(MCPError) as raised:
                await client.read_resource(uri)
            assert raised.value.error.code == mcp_types.INVALID_PARAMS and "swordfish" not in raised.value.error.message
        assert (await client.read_resource("skill://careful/alias.md")).contents  # and the gateway still serves


async def test_read_file_refuses_dot_dot_and_links_out_even_when_they_appear_after_loading(escaping: Path) -> None:
    skill, _ = parse_instruction_skill(escaping / "careful")
    assert isinstance(skill, InstructionSkill) and skill.files == ("alias.md", "steps.md")
    for relative, reason in [
        ("../outside/secret.txt", "without '..'"),
        ("/etc/passwd", "without '..'"),
        ("leak.txt", "leads outside the skill's folder"),
        ("leakdir/secret.txt", "leads outside the skill's folder"),
        ("nope.md", "No file"),
    ]:
        with pytest.raises(InvalidRequestError, match=reason):
            read_file(skill, relative, 1 << 20)
    # a listed file swapped for a link out after loading is refused when read
    (escaping / "careful" / "steps.md").unlink()
    os.symlink(escaping.parent / "outside" / "secret.txt", escaping / "careful" / "steps.md")
    with pytest.raises(InvalidRequestError, match="leads outside"):
        read_file(skill, "steps.md", 1 << 20)
    assert read_file(skill, "SKILL.md", 1 << 20)[0].startswith(b"---")
    with pytest.raises(InvalidRequestError, match="bytes; skill files are served up to 10"):
        read_file(skill, "SKILL.md", 10)


async def test_a_caller_who_may_not_see_a_skill_may_not_read_its_files(tmp_path: Path) -> None:
    skill_folder(tmp_path, "private-notes")
    shutil.copytree(EXAMPLE_SKILLS / "release-notes", tmp_path / "release-notes")
    ops = {
        "auth": {"enabled": True, "rules": [{"tools": "skills:private-*", "roles": ["admin"]}], "local_roles": ["dev"]}
    }
    async with skills_gateway(tmp_path, ops=ops) as gw, Client(McpSurface(gw).server) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert listed == {"skill://release-notes/checklist.md", "skill://release-notes/template.md"}
        with pytest.raises(MCPError) as raised:
            await client.read_resource("skill://private-notes/steps.md")
        assert "No upstream offers the resource" in raised.value.error.message
        found = (await client.call_tool("search_tools", {"query": "careful thing"})).structured_content["tools"]
        assert "skills:private-notes" not in [t["id"] for t in found]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# no front matter\n", "opens with YAML front matter"),
        ("---\nname: x\n---\nbody\n", "description: is required"),
        ("---\ndescription: y\n---\nbody\n", "name: is required"),
        ("---\nname: bad name!\ndescription: y\n---\nbody\n", "characters outside"),
        ("---\nname: [x\ndescription: y\n---\nbody\n", "front matter is not valid YAML"),
    ],
    ids=["none", "no-description", "no-name", "bad-name", "not-yaml"],
)
async def test_a_broken_skill_md_is_reported_and_the_others_load(tmp_path: Path, text: str, reason: str) -> None:
    write(tmp_path / "broken", "SKILL.md", text)
    skill_folder(tmp_path, "fine")
    async with skills_gateway(tmp_path) as gw:
        assert gw.skills is not None and gw.skills.report is not None
        errors = gw.skills.report.errors
        assert len(errors) == 1 and reason in errors[0].reason and errors[0].path == tmp_path / "broken" / "SKILL.md"
        assert "skills:fine" in gw.registry.snapshot.tools
