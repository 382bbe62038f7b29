"""The engine framework: one plain function per role becomes validated tools with uniform results and errors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from aperture.engines import (
    Artifact,
    BuildInput,
    CreateInput,
    DeleteInput,
    Engine,
    RunInput,
    TestEnvArtifact,
    TestReport,
    TestStats,
    create_artifact,
    require_str,
)
from aperture.engines.server import answer
from aperture.model import ConfigError, ExecutionError, InputValidationError, UnknownToolError

pytestmark = pytest.mark.anyio


def builder_engine(seen: list[Any] | None = None) -> Engine:
    engine = Engine("demo", version="1.0.0", description="Builds demo things.")

    @engine.builder
    def build(request: BuildInput) -> Any:
        if seen is not None:
            seen.append((request, threading.current_thread().name))
        match request.name:
            case "boom":
                raise RuntimeError("the compiler crashed")
            case "keyerror":
                raise KeyError("flags")
            case "nothing":
                return None
            case "string":
                return "built it"
            case "mapping":
                return {"name": "m", "type": "binary", "location": "/out/m"}
            case "broken":
                return {"name": "b"}
            case "spec":
                require_str(request.spec, "target")
        return create_artifact(request.name, "binary", f"/out/{request.name}")

    return engine


async def test_a_builder_gets_build_and_build_batch_with_the_contract_schemas() -> None:
    engine = builder_engine()
    assert list(engine.tools) == ["build", "buildBatch"]
    build = engine.tools["build"]
    assert build.input_schema["required"] == ["name", "engine"]
    assert {"src", "dest", "spec", "env", "rootDir", "tmpDir"} <= set(build.input_schema["properties"])
    assert build.input_schema["additionalProperties"] is False
    assert set(build.output_schema["properties"]) >= {"name", "type", "location", "version", "timestamp"}
    batch = engine.tools["buildBatch"]
    assert batch.input_schema["required"] == ["specs"]
    item = batch.input_schema["properties"]["specs"]["items"]
    assert "required" not in item and "engine" in item["properties"]  # checked per item, documented as build's
    assert "demo engine" in build.description and "Builds demo things." in build.description


async def test_a_build_runs_a_sync_function_off_the_event_loop() -> None:
    seen: list[Any] = []
    result = await builder_engine(seen).call("build", {"name": "app", "engine": "go://demo"})
    assert not result.is_error
    assert result.structured is not None and result.structured["location"] == "/out/app"
    assert result.text.startswith("Built binary 'app' at /out/app.")
    assert seen[0][1] != threading.current_thread().name


async def test_async_functions_are_awaited() -> None:
    engine = Engine("async-demo")

    @engine.builder
    async def build(request: BuildInput) -> Artifact:
        return create_artifact(request.name, "generated", "/gen")

    result = await engine.call("build", {"name": "client", "engine": "async-demo"})
    assert result.structured is not None and result.structured["type"] == "generated"


async def test_relative_paths_resolve_against_root_dir_and_a_missing_one_fails_before_the_function(
    tmp_path: Path,
) -> None:
    (tmp_path / "src").mkdir()
    seen: list[Any] = []
    engine = builder_engine(seen)
    args = {"name": "a", "engine": "demo", "rootDir": str(tmp_path), "src": "src", "dest": "out", "tmpDir": "scratch"}
    await engine.call("build", args)
    request = seen[0][0]
    assert request.src == str(tmp_path / "src") and request.dest == str(tmp_path / "out")
    assert request.tmp_dir == str(tmp_path / "scratch")  # every directory, not only src and dest
    with pytest.raises(InputValidationError, match=r"src 'nope' not found: .*nope does not exist \(relative to root"):
        await engine.call("build", {"name": "a", "engine": "demo", "rootDir": str(tmp_path), "src": "nope"})
    with pytest.raises(InputValidationError, match="rootDir '/no/such/dir' is not an existing directory"):
        await engine.call("build", {"name": "a", "engine": "demo", "rootDir": "/no/such/dir"})
    assert len(seen) == 1  # the function never ran for the bad paths


@pytest.mark.parametrize(
    "value",
    ["demo", "go://demo", "py://demo", "go://github.com/acme/tools/cmd/demo@v1.2.0", "alias://nightly"],
    ids=["name", "go-uri", "other-scheme", "module-path-and-version", "orchestrator-alias"],
)
async def test_engine_accepts_the_engines_name_or_a_uri_naming_it(value: str) -> None:
    result = await builder_engine().call("build", {"name": "app", "engine": value})
    assert not result.is_error, result.text


@pytest.mark.parametrize(
    "value",
    ["x", "go://go-build", "go://demo-two", "demo@v1", "go://", "alias://", "DEMO"],
    ids=["other-name", "other-engine-uri", "longer-name", "bare-version", "empty-uri", "empty-alias", "case"],
)
async def test_engine_refuses_a_value_that_names_another_engine_saying_what_is_accepted(value: str) -> None:
    seen: list[Any] = []
    with pytest.raises(InputValidationError) as caught:
        await builder_engine(seen).call("build", {"name": "app", "engine": value})
    message = caught.value.message
    assert message.startswith(f"engine {value!r} does not name this engine ('demo').")
    assert "'demo' or a URI naming it ('go://demo')" in message and "alias://" in message
    assert caught.value.details["accepted"] == ["demo", "<scheme>://demo", "alias://<name>"]
    assert not seen  # the build function never ran


async def test_a_batch_item_for_another_engine_fails_alone() -> None:
    specs = [{"name": "one", "engine": "demo"}, {"name": "two", "engine": "go://go-build"}]
    result = await builder_engine().call("buildBatch", {"specs": specs})
    assert result.is_error and result.structured is not None
    assert [a["name"] for a in result.structured["artifacts"]] == ["one"]
    [error] = result.structured["errors"]
    assert error["index"] == 1 and error["error"].startswith("engine 'go://go-build' does not name this engine")


async def test_missing_and_empty_required_fields_are_named_with_the_valid_parameters() -> None:
    with pytest.raises(InputValidationError) as caught:
        await builder_engine().call("build", {"name": ""})
    message = caught.value.message
    assert "missing required argument 'engine'" in message
    assert "argument 'name': '' should be non-empty" in message
    assert "Valid parameters:" in message
    with pytest.raises(InputValidationError, match="unknown argument 'rootdir'"):
        await builder_engine().call("build", {"name": "a", "engine": "demo", "rootdir": "/"})
    with pytest.raises(InputValidationError, match="spec"):
        await builder_engine().call("build", {"name": "a", "engine": "demo", "spec": "not an object"})


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("boom", ExecutionError, "Build failed: the compiler crashed"),
        ("keyerror", ExecutionError, "Build failed: KeyError: 'flags'"),
        ("nothing", ExecutionError, "the build function returned nothing; it must return an Artifact"),
        ("string", ExecutionError, "the build function returned a str; it must return an Artifact"),
        ("broken", ExecutionError, "returned an invalid Artifact \\(type: Field required; location: Field required"),
        ("spec", InputValidationError, "spec.target is required"),
    ],
)
async def test_what_a_function_does_wrong_becomes_a_clear_error(name: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        await builder_engine().call("build", {"name": name, "engine": "demo"})


async def test_a_mapping_is_accepted_as_the_result() -> None:
    result = await builder_engine().call("build", {"name": "mapping", "engine": "demo"})
    assert result.structured == {
        "name": "m",
        "type": "binary",
        "location": "/out/m",
        "version": "",
        "timestamp": "",
        "dependencies": [],
    }


async def test_a_batch_builds_every_good_item_and_reports_each_bad_one() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def report(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    specs = [
        {"name": "one", "engine": "demo"},
        {"name": "two"},  # no engine
        {"name": "boom", "engine": "demo"},  # the function raises
        {"name": "three", "engine": "demo"},
    ]
    result = await builder_engine().call("buildBatch", {"specs": specs}, report)
    assert result.is_error
    data = result.structured
    assert data is not None
    assert [a["name"] for a in data["artifacts"]] == ["one", "three"]
    assert data["count"] == 2
    assert [(e["index"], e["name"]) for e in data["errors"]] == [(1, "two"), (2, "boom")]
    assert "missing required argument 'engine'" in data["errors"][0]["error"]
    assert data["errors"][0]["error"].startswith("specs[1]: ")
    assert data["errors"][1]["error"] == "Build failed: the compiler crashed"
    assert data["summary"].startswith("Built 2 of 4. Failed: #1 'two'")
    assert [p[0] for p in progress] == [1, 2, 3, 4] and progress[0][1] == 4


async def test_a_batch_of_good_items_is_a_success_and_an_empty_one_is_refused() -> None:
    result = await builder_engine().call("buildBatch", {"specs": [{"name": "a", "engine": "demo"}]})
    assert not result.is_error and result.structured is not None and result.structured["errors"] == []
    with pytest.raises(InputValidationError, match="specs"):
        await builder_engine().call("buildBatch", {"specs": []})


def runner_engine() -> Engine:
    engine = Engine("tests")

    @engine.test_runner
    def run(request: RunInput) -> Any:
        if request.name == "cannot-run":
            raise FileNotFoundError("pytest not installed")
        if request.name == "bad-report":
            return {"status": "flaky"}
        failed = 1 if request.name == "red" else 0
        return TestReport(
            status="failed" if failed else "passed",
            test_stats=TestStats(total=3, passed=3 - failed, failed=failed),
            output_path="/tmp/junit.xml",
        )

    return engine


async def test_a_passing_run_is_a_success_with_the_report_filled_in() -> None:
    result = await runner_engine().call("run", {"id": "r1", "stage": "unit", "name": "green"})
    assert not result.is_error
    report = result.structured
    assert report is not None
    assert (report["id"], report["stage"], report["status"]) == ("r1", "unit", "passed")
    assert report["testStats"] == {"total": 3, "passed": 3, "failed": 0, "skipped": 0}
    assert report["startTime"].endswith("Z") and report["duration"] >= 0
    assert report["coverage"] == {"enabled": False, "percentage": 0.0, "filePath": ""}
    assert result.text.startswith("Tests passed (green, stage unit): 3 passed, 0 failed, 0 skipped of 3")


async def test_failing_tests_are_an_error_result_that_still_carries_the_report() -> None:
    result = await runner_engine().call("run", {"id": "r2", "stage": "unit", "name": "red"})
    assert result.is_error
    assert result.structured is not None and result.structured["status"] == "failed"
    assert result.structured["testStats"]["failed"] == 1
    assert result.text.startswith("Tests failed")


async def test_tests_that_cannot_run_are_a_plain_error_without_a_report() -> None:
    with pytest.raises(ExecutionError, match="Test run failed: FileNotFoundError: pytest not installed"):
        await runner_engine().call("run", {"id": "r3", "stage": "unit", "name": "cannot-run"})
    with pytest.raises(ExecutionError, match="invalid TestReport \\(status: Input should be 'passed' or 'failed'"):
        await runner_engine().call("run", {"id": "r4", "stage": "unit", "name": "bad-report"})
    with pytest.raises(InputValidationError, match="missing required argument 'stage'"):
        await runner_engine().call("run", {"id": "r5", "name": "x"})


def scratch_engine(state: dict[str, Path]) -> Engine:
    engine = Engine("scratch")

    @engine.create
    def create(request: CreateInput) -> TestEnvArtifact:
        made = Path(request.tmp_dir) / f"scratch-{request.test_id}"
        made.mkdir()
        (made / "config.json").write_text("{}")
        state[request.test_id] = made
        return TestEnvArtifact(
            files={"scratch.config": str(made / "config.json"), "outside": "/etc/hostname"},
            metadata={"scratch.path": str(made)},
            managed_resources=[str(made)],
            env={"SCRATCH_DIR": str(made), "SCRATCH_TOKEN": "t", "AWS_REGION": "x"},
        )

    @engine.delete
    def delete(request: DeleteInput) -> None:
        path = Path(request.metadata.get("scratch.path", "/nonexistent"))
        if path.exists():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()

    return engine


async def test_create_makes_tmp_dir_and_returns_files_relative_to_it_then_delete_is_idempotent(tmp_path: Path) -> None:
    state: dict[str, Path] = {}
    engine = scratch_engine(state)
    result = await engine.call(
        "create", {"testID": "t1", "stage": "e2e", "tmpDir": "envs/t1", "rootDir": str(tmp_path)}
    )
    made = result.structured
    assert made is not None
    assert (tmp_path / "envs" / "t1").is_dir()  # created, relative to rootDir
    assert made["testID"] == "t1"
    assert made["files"] == {"scratch.config": "scratch-t1/config.json", "outside": "/etc/hostname"}
    assert state["t1"].is_dir()
    first = await engine.call("delete", {"testID": "t1", "metadata": made["metadata"]})
    assert not first.is_error and not state["t1"].exists()
    assert first.structured == {"testID": "t1", "deleted": True, "message": "Deleted test environment 't1'."}
    second = await engine.call("delete", {"testID": "t1", "metadata": made["metadata"]})
    assert not second.is_error
    with pytest.raises(InputValidationError, match="missing required argument 'testID'"):
        await engine.call("delete", {"metadata": {}})
    with pytest.raises(InputValidationError, match="tmpDir"):
        await engine.call("create", {"testID": "t2", "stage": "e2e"})


async def test_create_applies_env_propagation_to_the_environment_it_returns(tmp_path: Path) -> None:
    engine = scratch_engine({})
    base = {"stage": "e2e", "tmpDir": str(tmp_path)}
    everything = await engine.call("create", {**base, "testID": "a"})
    assert everything.structured is not None and set(everything.structured["env"]) == {
        "SCRATCH_DIR",
        "SCRATCH_TOKEN",
        "AWS_REGION",
    }
    rules = {"whitelist": ["SCRATCH_*", "AWS_REGION"], "blacklist": ["*_TOKEN"]}
    filtered = await engine.call("create", {**base, "testID": "b", "envPropagation": rules})
    assert filtered.structured is not None and set(filtered.structured["env"]) == {"SCRATCH_DIR", "AWS_REGION"}
    off = await engine.call("create", {**base, "testID": "c", "envPropagation": {"disabled": True}})
    assert off.structured is not None and "env" in off.structured and off.structured["env"] == {}


def test_registration_mistakes_fail_at_once_with_the_fix() -> None:
    engine = Engine("e")
    with pytest.raises(TypeError, match="must take exactly one argument, the BuildInput; it takes 2"):
        engine.builder(lambda request, extra: None)
    engine.builder(lambda request: None)
    with pytest.raises(TypeError, match="already registered a 'build' tool"):
        engine.builder(lambda request: None)
    with pytest.raises(ConfigError, match="has no tools"):
        Engine("empty").check()
    half = Engine("half")
    half.create(lambda request: None)
    with pytest.raises(ConfigError, match=r"has @engine.create but no @engine.delete"):
        half.check()
    with pytest.raises(Exception, match="engine name"):
        Engine("bad name!")


async def test_the_server_turns_every_failure_into_an_error_result_and_keeps_serving() -> None:
    engine = builder_engine()
    unknown = await answer(engine, "compile", {})
    assert unknown.is_error and "No tool 'compile'. Did you mean: build, buildBatch?" in unknown.text
    assert unknown.structured is not None and unknown.structured["error"]["code"] == "tool_not_found"
    not_object = await answer(engine, "build", ["a"])
    assert not_object.is_error and "arguments must be a JSON object" in not_object.text
    raised = await answer(engine, "build", {"name": "boom", "engine": "demo"})
    assert raised.is_error and raised.structured is not None
    assert raised.structured["error"]["code"] == "execution_failed"
    good = await answer(engine, "build", {"name": "fine", "engine": "demo"})
    assert not good.is_error


async def test_unknown_tools_name_the_engines_tools() -> None:
    with pytest.raises(UnknownToolError, match="Did you mean: run"):
        await runner_engine().call("test", {})


def test_the_command_line_prints_version_tools_and_one_call(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from aperture.engines.server import main

    engine = builder_engine()
    assert main(engine, ["--version"]) == 0
    assert capsys.readouterr().out == "demo 1.0.0\n"
    assert main(engine, ["--list"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("build ") and "\nbuildBatch " in listing
    assert main(engine, ["build", '{"name": "cli", "engine": "demo"}']) == 0
    assert capsys.readouterr().out.startswith("Built binary 'cli' at /out/cli.")
    args = tmp_path / "args.json"
    args.write_text('{"name": "boom", "engine": "demo"}')
    assert main(engine, ["build", f"@{args}"]) == 1  # an error result: exit status 1
    assert "Build failed: the compiler crashed" in capsys.readouterr().out
    assert main(engine, ["build", "{not json"]) == 2
    assert "ARGS must be a JSON object" in capsys.readouterr().err
    assert main(engine, []) == 2  # nothing to do: the help, which names the tools
    assert "tools: build, buildBatch" in capsys.readouterr().out
    assert main(Engine("empty"), ["--list"]) == 2
    assert "has no tools" in capsys.readouterr().err
