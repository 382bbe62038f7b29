"""Engines in the gateway (`kind: engine`) and stand-alone over stdio, through the official MCP client."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from aperture.config import load_config, parse_config
from aperture.engines import Engine, EngineBackend, load_engine
from aperture.execution import CallContext, ToolOutput
from aperture.gateway import Gateway
from aperture.model import ConfigError
from aperture.surface.mcp import McpSurface
from tests.conftest import ROOT
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

ENGINE_MODULE = textwrap.dedent(
    """
    from aperture.engines import BuildInput, Engine, RunInput, TestReport, TestStats, create_artifact

    engine = Engine("toy", version="2.1.0", description="Packs toy archives.")

    @engine.builder
    def build(request: BuildInput):
        if request.name == "boom":
            raise RuntimeError("the packer crashed")
        if request.name == "nothing":
            return None
        return create_artifact(request.name, "archive", f"/out/{request.name}.tar")

    checker = Engine("toy-tests", description="Checks toy archives.")

    @checker.test_runner
    async def run(request: RunInput):
        failed = int(request.name == "red")
        stats = TestStats(total=2, passed=2 - failed, failed=failed)
        return TestReport(status="failed" if failed else "passed", test_stats=stats)

    if __name__ == "__main__":
        engine.main()
    """
)


@pytest.fixture
def engine_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "toy_engine.py").write_text(ENGINE_MODULE)
    yield tmp_path
    sys.modules.pop("toy_engine", None)  # each test imports its own copy
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_load_engine_finds_the_engine_or_says_how_to_name_it(engine_dir: Path) -> None:
    assert load_engine("toy_engine:engine", path=engine_dir).name == "toy"
    with pytest.raises(ConfigError, match=r"defines 2 Engine objects \(toy_engine:engine, toy_engine:checker\)"):
        load_engine("toy_engine", path=engine_dir)
    with pytest.raises(ConfigError, match=r"'build' in toy_engine is not an aperture\.engines\.Engine"):
        load_engine("toy_engine:build", path=engine_dir)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_engine'"):
        load_engine("no_such_engine")


async def test_one_engine_keeps_its_tool_names_several_are_prefixed(engine_dir: Path) -> None:
    toy = load_engine("toy_engine:engine", path=engine_dir)
    checker = load_engine("toy_engine:checker", path=engine_dir)
    single = EngineBackend("pack", [toy])
    assert [t.key for t in await single.list_tools()] == ["pack:build", "pack:buildBatch"]
    both = EngineBackend("ci", [toy, checker])
    assert [t.key for t in await both.list_tools()] == ["ci:toy.build", "ci:toy.buildBatch", "ci:toy-tests.run"]
    output = await both.call("toy-tests.run", {"id": "1", "stage": "unit", "name": "red"}, CallContext())
    assert isinstance(output, ToolOutput) and output.is_error and output.structured["status"] == "failed"
    assert (await both.health()).healthy
    with pytest.raises(ConfigError, match="two engines are named 'toy'"):
        EngineBackend("dup", [toy, toy])
    with pytest.raises(ConfigError, match="has no tools"):
        EngineBackend("empty", [Engine("nothing")])


async def test_mounted_engines_are_searchable_and_runnable_through_the_gateway(engine_dir: Path) -> None:
    config = parse_config(
        {
            "search": {"strategy": "bm25"},
            "backends": [
                {"name": "ci", "kind": "engine", "engines": ["toy_engine:engine", "toy_engine:checker"], "path": "."}
            ],
        },
        base_dir=engine_dir,
    )
    assert config.backends[0].timeout == 600.0  # builds get more time than the 30 s default
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
        found = await client.call_tool("search_tools", {"query": "pack a toy archive"})
        assert "ci:toy.build" in text_of(found)
        built = await run(client, "ci:toy.build", {"name": "a", "engine": "toy"})
        assert not built.is_error, text_of(built)
        assert built.structured_content["result"] == {
            "name": "a",
            "type": "archive",
            "location": "/out/a.tar",
            "version": "",
            "timestamp": built.structured_content["result"]["timestamp"],
            "dependencies": [],
        }
        failed = await run(client, "ci:toy.build", {"name": "boom", "engine": "toy"})
        assert error_of(failed)["code"] == "execution_failed"
        assert "Build failed: the packer crashed" in text_of(failed)
        wrong = error_of(await run(client, "ci:toy.build", {"name": "a", "engine": "toy-tests"}))
        assert wrong["code"] == "validation_input" and "does not name this engine ('toy')" in wrong["message"]
        missing = await run(client, "ci:toy.build", {"name": "a"})
        assert error_of(missing)["code"] == "validation_input"
        assert "missing required argument 'engine'" in text_of(missing)
        red = await run(client, "ci:toy-tests.run", {"id": "1", "stage": "unit", "name": "red"})
        assert red.is_error and "Tests failed" in text_of(red)
        assert red.structured_content["result"]["status"] == "failed"  # the report, not an error envelope
        batch = await run(
            client, "ci:toy.buildBatch", {"specs": [{"name": "a", "engine": "toy"}, {"name": "boom", "engine": "toy"}]}
        )
        assert batch.is_error and batch.structured_content["result"]["count"] == 1
        described = await client.call_tool("describe_tool", {"tool_id": "ci:toy.build", "detail_level": "schema"})
        assert "rootDir" in text_of(described)


async def test_the_example_engines_config_mounts_the_three_examples() -> None:
    config = load_config(ROOT / "examples" / "engines.yaml")
    async with Gateway(config) as gateway:
        names = [tool.key for tool in gateway.index.tools()]
    assert names == [
        "ci:wheel-builder.build",
        "ci:wheel-builder.buildBatch",
        "ci:pytest-runner.run",
        "ci:git-testenv.create",
        "ci:git-testenv.delete",
    ]


async def test_a_bad_engine_reference_fails_at_startup_with_the_fix(engine_dir: Path) -> None:
    config = parse_config(
        {"backends": [{"name": "ci", "kind": "engine", "engines": ["toy_engine"], "path": "."}]}, base_dir=engine_dir
    )
    with pytest.raises(ConfigError, match="name one as module:attribute"):
        async with Gateway(config):
            pass
    with pytest.raises(ConfigError, match="engines"):
        parse_config({"backends": [{"name": "ci", "kind": "engine", "engines": []}]})


async def test_an_engine_serves_stand_alone_over_stdio(engine_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(engine_dir), *sys.path])}
    argv = ["-m", "toy_engine", "--mcp"]
    params = StdioServerParameters(command=sys.executable, args=argv, env=env, cwd=str(engine_dir))
    async with Client(params) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert list(tools) == ["build", "buildBatch"]
        assert tools["build"].input_schema["required"] == ["name", "engine"]
        assert tools["build"].output_schema is not None
        built = await client.call_tool("build", {"name": "z", "engine": "toy"})
        assert not built.is_error and built.structured_content["location"] == "/out/z.tar"
        boom = await client.call_tool("build", {"name": "boom", "engine": "toy"})
        assert boom.is_error and "the packer crashed" in text_of(boom)
        nothing = await client.call_tool("build", {"name": "nothing", "engine": "toy"})
        assert nothing.is_error and "returned nothing; it must return an Artifact" in text_of(nothing)
        bad = await client.call_tool("build", {"name": 5})
        assert bad.is_error and "missing required argument 'engine'" in text_of(bad)
        again = await client.call_tool("build", {"name": "y", "engine": "toy"})  # still serving
        assert not again.is_error
