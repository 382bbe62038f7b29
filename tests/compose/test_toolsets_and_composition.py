"""A caller bound to a toolset reaches nothing outside it through the composition layer either: not through a
run_chain step, nor a recipe skill's step, nor an inline skill. Each gets the error an unknown tool gets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from aperture.config import parse_config
from aperture.execution import CallContext
from aperture.gateway import META_TOOLS_BY_NAME, Gateway
from aperture.model import UnknownToolError
from aperture.ops.identity import Identity, current_identity
from tests.conftest import ROOT

pytestmark = pytest.mark.anyio

EXAMPLES = ROOT / "examples"
# 'notes' holds the skills and one toolbox tool; publish_note's other steps (text_statistics, hash_text) are
# outside it.
CONFIG: dict[str, Any] = {
    "backends": [{"name": "toolbox", "kind": "python", "module": "toolbox", "path": str(EXAMPLES)}],
    "search": {"strategy": "bm25"},
    "skills": {"paths": [str(EXAMPLES / "skills")], "watch": False},
    "toolsets": [{"name": "notes", "include": [{"namespaces": ["skills"]}, {"tools": ["toolbox:slugify"]}]}],
    "ops": {"auth": {"enabled": True, "local_roles": ["*"]}},
}
BOT = Identity(name="notes-bot", method="api_key", toolsets=("notes",))
NOTE = {"title": "Hello", "text": "One line."}


@asynccontextmanager
async def gateway() -> AsyncIterator[Gateway]:
    async with Gateway(parse_config(CONFIG, base_dir=EXAMPLES)) as gw:
        yield gw


@contextmanager
def as_caller(who: Identity | None) -> Iterator[None]:
    token = current_identity.set(who)
    try:
        yield
    finally:
        current_identity.reset(token)


async def meta(gw: Gateway, name: str, args: dict[str, Any]) -> Any:
    return await META_TOOLS_BY_NAME[name].call(gw, CallContext(), args)


async def test_a_chain_step_outside_the_toolset_is_an_unknown_tool() -> None:
    async with gateway() as gw:
        with as_caller(BOT):
            steps = [
                {"tool_id": "toolbox:slugify", "args": {"text": "Hello World"}},
                {"tool_id": "toolbox:hash_text", "args": {"text": "x"}},
            ]
            chain = (await meta(gw, "run_chain", {"steps": steps})).to_dict()
            assert chain["results"][0]["structured"] == {"result": "hello-world"}  # inside: it runs
            assert chain["error"]["code"] == "chain_step_failed" and chain["error"]["step_index"] == 1
            assert chain["results"][1]["error"]["code"] == "tool_not_found"
            assert "structured" not in chain["results"][1] and "backend" not in chain["results"][1]
            alone = await gw.run("toolbox:hash_text", {"text": "x"}, CallContext())
            assert alone.error is not None
            assert chain["results"][1]["error"]["message"] == alone.error.message  # exactly what run_tool says
        with as_caller(None):  # the same chain for a caller bound to nothing runs through
            assert (await meta(gw, "run_chain", {"steps": steps})).is_error is False


async def test_a_skill_in_the_toolset_runs_no_step_outside_it() -> None:
    async with gateway() as gw:
        with as_caller(BOT):
            assert [h["id"] for h in gw.search("publish a note", limit=3)["tools"]][:1] == ["skills:publish_note"]
            ran = await gw.run("skills:publish_note", NOTE, CallContext())
            assert ran.error is not None and ran.error.code.value == "tool_not_found"
            assert "toolbox:text_statistics" in ran.error.message
            assert ran.structured is None or "results" not in ran.structured  # refused before any step ran
        with as_caller(None):
            done = await gw.run("skills:publish_note", NOTE, CallContext())
            assert done.error is None and done.structured["value"]["slug"] == "hello"


async def test_an_inline_skill_cannot_reach_outside_the_toolset() -> None:
    async with gateway() as gw:
        inline = {
            "name": "sneak",
            "steps": [{"id": "calc", "tool_id": "toolbox:calculate", "args": {"expression": "6*7"}}],
        }
        with as_caller(BOT), pytest.raises(UnknownToolError, match=r"step 'calc' \(1 of 1\): No tool 'toolbox:calc"):
            await meta(gw, "run_skill", {"skill": inline})
        with as_caller(None):
            assert (await meta(gw, "run_skill", {"skill": inline})).structured["value"] == {"result": 42.0}


async def test_planning_a_skill_with_a_step_outside_the_toolset_fails_as_for_an_unknown_tool() -> None:
    async with gateway() as gw:
        with (
            as_caller(BOT),
            pytest.raises(UnknownToolError, match=r"step 'stats' \(2 of 4\): No tool 'toolbox:text_st"),
        ):
            await meta(gw, "plan_skill", {"skill_id": "skills:publish_note", "inputs": NOTE})
        with as_caller(None):
            planned = await meta(gw, "plan_skill", {"skill_id": "skills:publish_note", "inputs": NOTE})
            assert [s["tool_id"] for s in planned["plan"]["steps"]][1] == "toolbox:text_statistics"
