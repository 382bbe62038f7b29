"""The example engines (examples/engines) for real: a wheel built by pip, pytest runs, git repositories.

Each engine is driven through the official MCP client twice over: stand-alone (`python -m <engine>
--mcp`, a real stdio process per engine, shared by the module) and mounted in the gateway with
`kind: engine`. Failures are checked as the model sees them, and each engine keeps answering after them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from mcp import Client, StdioServerParameters

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import ROOT
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

ENGINES = ROOT / "examples" / "engines"
SAMPLE = ENGINES / "sample_project"
GOOD_BUILD = {"name": "sample", "engine": "wheel-builder"}
# The venv's pytest plugins (hypothesis above all) cost some 2 s of every run's start, and these projects
# need none: most runs turn them off through the call's `env`, as a caller may.
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
SAMPLE_RUN = {"id": "sample-1", "stage": "unit", "name": "sample", "rootDir": str(SAMPLE), "env": FAST}
MIXED_TESTS = """
import pytest

def test_one(): assert 1 + 1 == 2
def test_two(): assert "a".upper() == "A"
def test_three(): assert [1, 2] == [2, 1], "order matters"

@pytest.mark.skip(reason="not today")
def test_four(): pass
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope, so that the engine processes and the gateway are shared by the module


def engine_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ENGINES), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


@asynccontextmanager
async def standalone(module: str) -> AsyncIterator[Client]:
    """`python -m <module> --mcp` from examples/engines, with the official client on its stdio."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", module, "--mcp"], cwd=str(ENGINES), env=engine_env()
    )
    async with Client(params) as client:
        yield client


@pytest.fixture(scope="module")
async def builder() -> AsyncIterator[Client]:
    async with standalone("wheel_builder") as client:
        yield client


@pytest.fixture(scope="module")
async def runner() -> AsyncIterator[Client]:
    async with standalone("pytest_runner") as client:
        yield client


@pytest.fixture(scope="module")
async def testenv() -> AsyncIterator[Client]:
    async with standalone("git_testenv") as client:
        yield client


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[Client]:
    """The gateway with all three engines in one backend (`ci`, names prefixed) and the builder alone (`wheels`)."""
    config = parse_config(
        {
            "backends": [
                {
                    "name": "ci",
                    "kind": "engine",
                    "engines": ["wheel_builder", "pytest_runner", "git_testenv:engine"],
                    "path": str(ENGINES),
                },
                {"name": "wheels", "kind": "engine", "engines": ["wheel_builder"], "path": str(ENGINES)},
            ],
            "search": {"strategy": "bm25"},
        }
    )
    async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
        yield client


def repo_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def project(root: Path, tests: str) -> Path:
    """A tiny project with one test file and its own pytest section (so it is pytest's rootdir)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_it.py").write_text(tests)
    return root


def check_wheel(artifact: dict[str, Any], name: str = "sample") -> Path:
    """The artifact is a wheel of the sample project, versioned by the repository's commit."""
    wheel = Path(artifact["location"])
    assert artifact["name"] == name and artifact["type"] == "wheel", artifact
    assert wheel.suffix == ".whl" and wheel.is_file(), artifact
    assert "sample_calc/__init__.py" in zipfile.ZipFile(wheel).namelist()
    assert artifact["version"] == repo_commit()
    assert artifact["timestamp"].endswith("Z")
    return wheel


# --- stand-alone: tools and schemas ---------------------------------------------------------------


async def test_each_engine_lists_its_tools_with_required_fields_and_output_schemas(
    builder: Client, runner: Client, testenv: Client
) -> None:
    listed: dict[str, mcp_types.Tool] = {}
    for client in (builder, runner, testenv):
        listed |= {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == {"build", "buildBatch", "run", "create", "delete"}
    required = {name: set(tool.input_schema.get("required", [])) for name, tool in listed.items()}
    assert required == {
        "build": {"name", "engine"},
        "buildBatch": {"specs"},
        "run": {"id", "stage", "name"},
        "create": {"testID", "stage", "tmpDir"},
        "delete": {"testID"},
    }
    assert {"src", "dest", "spec", "env", "rootDir", "tmpDir"} <= set(listed["build"].input_schema["properties"])
    assert {"spec", "artifactFiles", "testenvMetadata"} <= set(listed["run"].input_schema["properties"])
    outputs = {name: set((tool.output_schema or {}).get("properties", {})) for name, tool in listed.items()}
    assert {"name", "type", "location", "version", "timestamp", "dependencies"} <= outputs["build"]
    assert {"artifacts", "errors", "summary", "count"} <= outputs["buildBatch"]
    assert {"status", "testStats", "coverage", "duration", "outputPath", "errorMessage"} <= outputs["run"]
    assert {"files", "metadata", "managedResources"} <= outputs["create"]
    assert "pip wheel" in (listed["build"].description or "")


def test_engine_module_answers_version_and_list() -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wheel_builder", *args],
            cwd=ENGINES,
            env=engine_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    assert cli("--version") == "wheel-builder 0.1.0\n"
    listing = cli("--list").splitlines()
    assert [line.split()[0] for line in listing] == ["build", "buildBatch"]
    assert "pip wheel" in listing[0]


# --- stand-alone: builds --------------------------------------------------------------------------


async def test_build_makes_a_wheel_of_the_sample_project_versioned_by_the_commit(
    builder: Client, tmp_path: Path
) -> None:
    result = await builder.call_tool("build", {**GOOD_BUILD, "tmpDir": str(tmp_path)})
    assert not result.is_error, text_of(result)
    wheel = check_wheel(result.structured_content)
    assert wheel.parent == tmp_path / "dist"
    assert text_of(result).startswith(f"Built wheel 'sample' at {wheel}")


async def test_build_of_a_directory_without_a_project_fails_before_pip(builder: Client, tmp_path: Path) -> None:
    error = error_of(await builder.call_tool("build", {**GOOD_BUILD, "src": str(tmp_path)}))
    assert error["code"] == "validation_input"
    assert error["message"] == (
        f"src '{tmp_path}' is not a Python project: it has no pyproject.toml or setup.py. "
        "Give the directory that holds the project's pyproject.toml."
    )


async def test_build_of_a_broken_project_quotes_pip_and_the_next_build_works(builder: Client, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "broken"\nversion = "not a version!"\n'
    )
    result = await builder.call_tool("build", {**GOOD_BUILD, "src": str(broken), "tmpDir": str(tmp_path)})
    error = error_of(result)
    assert error["code"] == "execution_failed"
    assert error["message"].startswith(f"Build failed: pip wheel exited with status 1 building {broken}:")
    assert "Invalid version `not a version!`" in error["message"]  # pip's (hatchling's) own words
    assert not list(tmp_path.glob("dist/*.whl"))
    # Relative src and dest resolve against rootDir.
    args = {**GOOD_BUILD, "rootDir": str(ENGINES), "src": "sample_project", "dest": str(tmp_path / "out")}
    result = await builder.call_tool("build", {**args, "spec": {"quiet": True}})
    assert check_wheel(result.structured_content).parent == tmp_path / "out"


async def test_batch_builds_every_good_item_and_reports_each_bad_one(builder: Client, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    dest = str(tmp_path / "dist")
    specs = [
        {**GOOD_BUILD, "name": "first", "dest": dest},
        {"name": "no-engine", "dest": dest},
        {**GOOD_BUILD, "name": "not-a-project", "src": str(tmp_path / "empty")},
        {**GOOD_BUILD, "name": "last", "dest": str(tmp_path / "dist2")},
    ]
    result = await builder.call_tool("buildBatch", {"specs": specs})
    assert result.is_error  # some items failed
    batch = result.structured_content
    assert batch["count"] == 2
    assert [check_wheel(a, a["name"]).parent.name for a in batch["artifacts"]] == ["dist", "dist2"]
    assert [a["name"] for a in batch["artifacts"]] == ["first", "last"]
    errors = {e["index"]: e for e in batch["errors"]}
    assert set(errors) == {1, 2}
    assert errors[1]["name"] == "no-engine" and "engine" in errors[1]["error"]
    assert errors[2]["name"] == "not-a-project" and "no pyproject.toml or setup.py" in errors[2]["error"]
    assert batch["summary"].startswith("Built 2 of 4. Failed: #1 'no-engine'")


# --- stand-alone: test runs -----------------------------------------------------------------------


async def test_run_of_passing_tests_is_a_passed_report_with_coverage(runner: Client, tmp_path: Path) -> None:
    args = {**SAMPLE_RUN, "env": {}, "tmpDir": str(tmp_path), "spec": {"coverage": True}}  # with the plugins
    result = await runner.call_tool("run", args)
    assert not result.is_error, text_of(result)
    report = result.structured_content
    assert report["status"] == "passed" and report["id"] == "sample-1" and report["stage"] == "unit"
    assert report["testStats"] == {"total": 5, "passed": 4, "failed": 0, "skipped": 1}
    assert report["outputPath"] == str(tmp_path / "junit-sample-1.xml") and Path(report["outputPath"]).is_file()
    assert report["duration"] > 0 and report["startTime"].endswith("Z") and report["errorMessage"] == ""
    coverage = report["coverage"]
    assert coverage["enabled"] is True and 50 < coverage["percentage"] <= 100
    assert coverage["filePath"] == str(tmp_path / "coverage-sample-1.json")


async def test_run_of_failing_tests_is_an_error_result_that_carries_the_report(runner: Client, tmp_path: Path) -> None:
    root = project(tmp_path / "mixed", MIXED_TESTS)
    result = await runner.call_tool(
        "run",
        {"id": "mixed", "stage": "unit", "name": "mixed", "rootDir": str(root), "tmpDir": str(tmp_path), "env": FAST},
    )
    assert result.is_error
    report = result.structured_content
    assert report["status"] == "failed"
    assert report["testStats"] == {"total": 4, "passed": 2, "failed": 1, "skipped": 1}
    assert "test_three" in Path(report["outputPath"]).read_text()
    assert text_of(result).startswith("Tests failed (mixed, stage unit): 2 passed, 1 failed, 1 skipped of 4")


async def test_run_selects_tests_by_keyword_and_reports_when_none_is_collected(runner: Client) -> None:
    picked = await runner.call_tool("run", {**SAMPLE_RUN, "spec": {"keyword": "slugify", "path": "tests"}})
    assert picked.structured_content["testStats"] == {"total": 2, "passed": 2, "failed": 0, "skipped": 0}
    none = await runner.call_tool("run", {**SAMPLE_RUN, "spec": {"markers": ["no_such_marker"]}})
    assert not none.is_error
    report = none.structured_content
    assert report["status"] == "passed" and report["testStats"]["total"] == 0
    assert report["errorMessage"].startswith("No tests were collected")


async def test_tests_that_cannot_run_are_a_plain_error_without_a_report(runner: Client, tmp_path: Path) -> None:
    root = project(tmp_path / "syntax", "def test_broken(:\n    pass\n")
    result = await runner.call_tool(
        "run", {"id": "s", "stage": "unit", "name": "syntax", "rootDir": str(root), "env": FAST}
    )
    error = error_of(result)  # structured content is the error, not a report
    assert "status" not in result.structured_content
    assert error["code"] == "execution_failed"
    assert error["message"].startswith("Test run failed: pytest could not run the tests (exit status 2):")
    assert "SyntaxError" in error["message"] or "invalid syntax" in error["message"]


# --- stand-alone: test environments ---------------------------------------------------------------


async def test_create_makes_a_git_repository_with_the_history_and_delete_removes_it(
    testenv: Client, tmp_path: Path
) -> None:
    commits = [
        {"message": "first", "files": {"README.md": "hello\n"}},
        {"message": "second", "files": {"src/app.py": "print('hi')\n", "README.md": "hello again\n"}},
    ]
    made = await testenv.call_tool(
        "create", {"testID": "t1", "stage": "it", "tmpDir": str(tmp_path), "spec": {"commits": commits}}
    )
    assert not made.is_error, text_of(made)
    env = made.structured_content
    repo = tmp_path / "git-t1"
    assert env["testID"] == "t1" and env["files"] == {"git-testenv.repo": "git-t1"}
    assert env["managedResources"] == [str(repo)] and env["env"] == {"GIT_TESTENV_REPO": str(repo)}
    assert env["metadata"]["git-testenv.path"] == str(repo) and env["metadata"]["git-testenv.commits"] == "2"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    assert git("rev-parse", "HEAD") == env["metadata"]["git-testenv.head"]
    assert git("log", "--format=%s|%an").splitlines() == ["second|Aperture Test", "first|Aperture Test"]
    assert (repo / "src" / "app.py").read_text() == "print('hi')\n" and git("status", "--porcelain") == ""

    deleted = await testenv.call_tool("delete", {"testID": "t1", "metadata": env["metadata"]})
    assert not deleted.is_error and deleted.structured_content["deleted"] is True
    assert not repo.exists()
    again = await testenv.call_tool("delete", {"testID": "t1", "metadata": env["metadata"]})
    assert not again.is_error, text_of(again)
    assert again.structured_content["message"] == f"Test environment 't1' is already gone ({repo})."


async def test_same_spec_gives_the_same_history_and_delete_finds_it_by_tmp_dir(testenv: Client, tmp_path: Path) -> None:
    heads = []
    for test_id in ("a", "b"):
        made = await testenv.call_tool("create", {"testID": test_id, "stage": "it", "tmpDir": str(tmp_path)})
        heads.append(made.structured_content["metadata"]["git-testenv.head"])
        assert made.structured_content["metadata"]["git-testenv.commits"] == "1"  # the default history
    assert heads[0] == heads[1]  # fixed author, committer and dates
    for test_id in ("a", "b"):
        result = await testenv.call_tool("delete", {"testID": test_id, "tmpDir": str(tmp_path)})
        assert not result.is_error, text_of(result)
    assert list(tmp_path.iterdir()) == []


# --- stand-alone: bad input, and the engine keeps serving -----------------------------------------


def bad(name: str, engine: str, tool: str, args: dict[str, Any], code: str, fragment: str) -> Any:
    """One bad call: which engine fixture, the call, the error code and a fragment of its message.

    "T" in the arguments stands for the test's tmp_path, where `git-taken` already exists.
    """
    return pytest.param(engine, tool, args, code, fragment, id=name)


CREATE = {"testID": "x", "stage": "it", "tmpDir": "T"}
BAD_CALLS = [
    bad(
        "build-missing-engine",
        "builder",
        "build",
        {"name": "x"},
        "validation_input",
        "missing required argument 'engine'",
    ),
    bad(
        "build-for-another-engine",
        "builder",
        "build",
        {**GOOD_BUILD, "engine": "go://go-build"},
        "validation_input",
        "engine 'go://go-build' does not name this engine ('wheel-builder')",
    ),
    bad(
        "build-spec-not-object",
        "builder",
        "build",
        {**GOOD_BUILD, "spec": "quiet"},
        "validation_input",
        "argument 'spec' must be object",
    ),
    bad(
        "build-spec-quiet-not-bool",
        "builder",
        "build",
        {**GOOD_BUILD, "spec": {"quiet": "yes"}},
        "validation_input",
        "spec.quiet must be true or false",
    ),
    bad("build-src-missing", "builder", "build", {**GOOD_BUILD, "src": "no/such"}, "validation_input", "src 'no/such'"),
    bad(
        "run-missing-id",
        "runner",
        "run",
        {"stage": "unit", "name": "x"},
        "validation_input",
        "missing required argument 'id'",
    ),
    bad(
        "run-markers-not-list",
        "runner",
        "run",
        {**SAMPLE_RUN, "spec": {"markers": "slow"}},
        "validation_input",
        "spec.markers must be a list of strings",
    ),
    bad(
        "run-spec-path-missing",
        "runner",
        "run",
        {**SAMPLE_RUN, "spec": {"path": "missing"}},
        "validation_input",
        "spec.path 'missing' not found",
    ),
    bad("run-root-dir-missing", "runner", "run", {**SAMPLE_RUN, "rootDir": "/no/such"}, "validation_input", "/no/such"),
    bad(
        "run-raises-on-a-pytest-usage-error",
        "runner",
        "run",
        {**SAMPLE_RUN, "spec": {"args": ["--no-such-option"]}},
        "execution_failed",
        "pytest could not run the tests (exit status 4)",
    ),
    bad(
        "create-missing-tmp-dir",
        "testenv",
        "create",
        {"testID": "x", "stage": "it"},
        "validation_input",
        "missing required argument 'tmpDir'",
    ),
    bad(
        "create-commit-without-message",
        "testenv",
        "create",
        {**CREATE, "spec": {"commits": [{"files": {}}]}},
        "validation_input",
        "spec.commits[0].message must be a non-empty string",
    ),
    bad(
        "create-commits-not-list",
        "testenv",
        "create",
        {**CREATE, "spec": {"commits": {"message": "m"}}},
        "validation_input",
        "spec.commits must be a non-empty list",
    ),
    bad("create-test-id-escapes", "testenv", "create", {**CREATE, "testID": "../x"}, "validation_input", "testID"),
    bad(
        "create-raises-when-the-directory-exists",
        "testenv",
        "create",
        {**CREATE, "testID": "taken"},
        "execution_failed",
        "Create failed: FileExistsError",
    ),
    bad("delete-nowhere-to-look", "testenv", "delete", {"testID": "x"}, "validation_input", "pass the metadata"),
    bad(
        "delete-refuses-a-foreign-directory",
        "testenv",
        "delete",
        {"testID": "x", "metadata": {"git-testenv.path": "T"}},
        "validation_input",
        "not deleted",
    ),
]


@pytest.mark.parametrize(("engine", "tool", "args", "code", "fragment"), BAD_CALLS)
async def test_bad_calls_are_clear_errors_and_the_engine_keeps_serving(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    tool: str,
    args: dict[str, Any],
    code: str,
    fragment: str,
) -> None:
    client: Client = request.getfixturevalue(engine)
    (tmp_path / "git-taken").mkdir()
    args = {k: str(tmp_path) if v == "T" else v for k, v in args.items()}
    if "metadata" in args:
        args["metadata"] = {"git-testenv.path": str(tmp_path)}  # an existing directory it did not make
    error = error_of(await client.call_tool(tool, args))
    assert error["code"] == code, error
    assert fragment in error["message"], error["message"]
    assert tmp_path.exists()
    await still_serving(client, engine, tmp_path)


async def still_serving(client: Client, engine: str, tmp_path: Path) -> None:
    """A good call on the same connection (the cheapest real one each engine has)."""
    if engine == "builder":
        result = await client.call_tool("build", {**GOOD_BUILD, "tmpDir": str(tmp_path), "spec": {"quiet": True}})
    elif engine == "runner":
        root = project(tmp_path / "ok", "def test_ok(): pass\n")
        result = await client.call_tool(
            "run", {"id": "ok", "stage": "unit", "name": "ok", "rootDir": str(root), "env": FAST}
        )
    else:
        result = await client.call_tool("delete", {"testID": "never-made", "tmpDir": str(tmp_path)})
    assert not result.is_error, text_of(result)


# --- mounted in the gateway -----------------------------------------------------------------------


async def test_gateway_lists_engine_tools_prefixed_with_several_engines_and_plain_with_one(gateway: Client) -> None:
    async def ids(namespace: str) -> set[str]:
        page = await gateway.call_tool("list_tools", {"namespace": namespace, "limit": 50})
        return {tool["id"] for tool in page.structured_content["tools"]}

    assert await ids("ci") == {
        "ci:wheel-builder.build",
        "ci:wheel-builder.buildBatch",
        "ci:pytest-runner.run",
        "ci:git-testenv.create",
        "ci:git-testenv.delete",
    }
    assert await ids("wheels") == {"wheels:build", "wheels:buildBatch"}
    doc = await gateway.call_tool("describe_tool", {"tool_id": "ci:pytest-runner.run", "detail_level": "schema"})
    assert set(doc.structured_content["input_schema"]["required"]) == {"id", "stage", "name"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("build a python wheel package", {"wheels:build", "ci:wheel-builder.build"}),
        ("run pytest tests and report failures", {"ci:pytest-runner.run"}),
        ("create a temporary git repository for a test", {"ci:git-testenv.create"}),
    ],
    ids=["wheel", "pytest", "git"],
)
async def test_gateway_search_finds_the_engine_tools(gateway: Client, query: str, expected: set[str]) -> None:
    found = await gateway.call_tool("search_tools", {"query": query, "limit": 3})
    top = [tool["id"] for tool in found.structured_content["tools"]]
    assert expected & set(top), top


async def test_gateway_runs_a_build_and_reports_a_failed_one(gateway: Client, tmp_path: Path) -> None:
    built = await run(gateway, "wheels:build", {**GOOD_BUILD, "tmpDir": str(tmp_path)})
    assert not built.is_error, text_of(built)
    check_wheel(built.structured_content["result"])
    failed = error_of(await run(gateway, "ci:wheel-builder.build", {**GOOD_BUILD, "src": str(tmp_path)}))
    assert failed["code"] == "validation_input" and "no pyproject.toml or setup.py" in failed["message"]


async def test_gateway_batch_with_one_bad_item(gateway: Client, tmp_path: Path) -> None:
    specs = [{**GOOD_BUILD, "tmpDir": str(tmp_path)}, {"engine": "wheel-builder"}]
    result = await run(gateway, "wheels:buildBatch", {"specs": specs})
    assert result.is_error
    batch = result.structured_content["result"]
    assert batch["count"] == 1 and [e["index"] for e in batch["errors"]] == [1]
    assert "name" in batch["errors"][0]["error"]


async def test_gateway_passes_on_test_reports_passed_and_failed(gateway: Client, tmp_path: Path) -> None:
    passed = await run(gateway, "ci:pytest-runner.run", SAMPLE_RUN)
    assert not passed.is_error, text_of(passed)
    assert passed.structured_content["result"]["testStats"] == {"total": 5, "passed": 4, "failed": 0, "skipped": 1}
    root = project(tmp_path / "mixed", MIXED_TESTS)
    failed = await run(
        gateway, "ci:pytest-runner.run", {"id": "m", "stage": "unit", "name": "m", "rootDir": str(root), "env": FAST}
    )
    assert failed.is_error
    report = failed.structured_content["result"]
    assert report["status"] == "failed" and report["testStats"]["failed"] == 1, report
    cannot = error_of(await run(gateway, "ci:pytest-runner.run", {**SAMPLE_RUN, "spec": {"path": "nope"}}))
    assert cannot["code"] == "validation_input" and "spec.path 'nope' not found" in cannot["message"]


async def test_gateway_creates_and_deletes_a_test_environment_twice(gateway: Client, tmp_path: Path) -> None:
    made = await run(gateway, "ci:git-testenv.create", {"testID": "gw", "stage": "it", "tmpDir": str(tmp_path)})
    assert not made.is_error, text_of(made)
    metadata = made.structured_content["result"]["metadata"]
    assert (tmp_path / "git-gw" / ".git").is_dir()
    for _ in range(2):
        deleted = await run(gateway, "ci:git-testenv.delete", {"testID": "gw", "metadata": metadata})
        assert not deleted.is_error, text_of(deleted)
    assert not (tmp_path / "git-gw").exists()


@pytest.mark.parametrize(
    ("tool_id", "args", "code", "fragment"),
    [
        pytest.param(
            "wheels:build", {"name": "x"}, "validation_input", "missing required argument 'engine'", id="missing-field"
        ),
        pytest.param(
            "ci:pytest-runner.run", {**SAMPLE_RUN, "spec": 3}, "validation_input", "spec", id="spec-not-object"
        ),
        pytest.param(
            "ci:wheel-builder.build",
            {**GOOD_BUILD, "rootDir": "T", "src": "gone"},
            "validation_input",
            "src 'gone' not found",
            id="src-missing",
        ),
        pytest.param(
            "ci:git-testenv.create",
            {**CREATE, "testID": "taken"},
            "execution_failed",
            "Create failed: FileExistsError",
            id="function-raises",
        ),
        pytest.param(
            "ci:git-testenv.create",
            {**CREATE, "tmpDir": "/proc/no-such/x"},
            "validation_input",
            "tmpDir '/proc/no-such/x' cannot be created",
            id="tmp-dir-cannot-be-made",
        ),
    ],
)
async def test_gateway_bad_calls_are_clear_errors_and_it_keeps_serving(
    gateway: Client, tmp_path: Path, tool_id: str, args: dict[str, Any], code: str, fragment: str
) -> None:
    (tmp_path / "git-taken").mkdir()
    args = {k: str(tmp_path) if v == "T" else v for k, v in args.items()}
    error = error_of(await run(gateway, tool_id, args))
    assert error["code"] == code, error
    assert fragment in error["message"], error["message"]
    alive = await run(gateway, "ci:git-testenv.delete", {"testID": "never-made", "tmpDir": str(tmp_path)})
    assert not alive.is_error, text_of(alive)
