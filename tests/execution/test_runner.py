"""The run pipeline, in process: resolution, validation, timeouts, normalisation, output checks."""

from __future__ import annotations

import anyio
import mcp_types
import pytest

from aperture.execution import BackendRegistry, CallContext, PythonBackend, Runner, closest_ids, normalize
from aperture.model import Tool, ToolId

pytestmark = pytest.mark.anyio


async def make_runner(timeout: float = 5.0) -> Runner:
    backend = PythonBackend("m")

    @backend.tool
    def add(a: int, b: int) -> int:
        return a + b

    @backend.tool
    async def slow(seconds: float) -> str:
        await anyio.sleep(seconds)
        return "done"

    @backend.tool
    def picture() -> mcp_types.ImageContent:
        return mcp_types.ImageContent(data="aGk=", mime_type="image/png")

    registry = BackendRegistry()
    await registry.register(backend)
    return Runner(registry, default_timeout=timeout)


async def test_a_valid_call_returns_coerced_result() -> None:
    runner = await make_runner()
    result = await runner.run("m:add", {"a": "2", "b": 3})
    assert not result.is_error and result.text == "5" and result.structured == {"result": 5}
    assert result.duration_ms > 0


async def test_a_version_suffix_must_match() -> None:
    runner = await make_runner()
    assert not (await runner.run("m:add:1.0", {"a": 1, "b": 1})).is_error  # unversioned tools accept any
    result = await runner.run("m:nope:1.0", {})
    assert result.error is not None and result.error.code == "tool_not_found"


async def test_timeouts_come_from_the_call_then_the_runner() -> None:
    runner = await make_runner(timeout=0.2)
    with anyio.fail_after(3):
        result = await runner.run("m:slow", {"seconds": 10})
    assert result.error is not None and result.error.code == "timeout" and "0.2 s" in result.error.message
    assert not (await runner.run("m:slow", {"seconds": 0.3}, CallContext(timeout=2))).is_error


async def test_content_blocks_pass_through() -> None:
    runner = await make_runner()
    result = await runner.run("m:picture", {})
    assert not result.is_error
    assert isinstance(result.content[0], mcp_types.ImageContent)


def test_normalize_shapes() -> None:
    assert normalize(None, tool_id="a:b").content == ()
    assert normalize("hi", tool_id="a:b").content[0].text == "hi"  # type: ignore[union-attr]
    as_dict = normalize({"k": 1}, tool_id="a:b")
    assert as_dict.structured == {"k": 1} and '"k": 1' in as_dict.content[0].text  # type: ignore[union-attr]
    assert normalize([1, 2], tool_id="a:b").structured is None
    blob = normalize(b"\x00\x01", tool_id="a:b").content[0]
    assert isinstance(blob, mcp_types.EmbeddedResource)


def test_closest_ids_prefer_the_same_namespace() -> None:
    tools = {k: Tool(id=ToolId.parse(k)) for k in ["box:calculate", "box:slugify", "other:calc_tax", "box:hash"]}
    assert closest_ids("box:calc", tools)[0] == "box:calculate"
    assert "box:slugify" not in closest_ids("box:calc", tools)
    assert closest_ids("nons:calculate", tools)[0] == "box:calculate"
