"""An engine: plain functions registered as builder, test-runner and test-environment tools.

    engine = Engine("wheel-builder", version="1.2.0", description="Builds Python wheels with pip.")

    @engine.builder
    def build(request: BuildInput) -> Artifact: ...

The framework owns everything around the function: the tools' names and schemas (`build` and
`buildBatch`, `run`, `create` and `delete`), input validation with messages a model can act on,
paths resolved against `rootDir` and checked before the function runs, sync functions moved off the
event loop, and one shape for results and errors. The same `Engine` serves stand-alone over MCP
(`engine.main()`) and mounts in the gateway (`kind: engine`).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio.to_thread
import pydantic

from aperture.engines.artifacts import rfc3339_now
from aperture.engines.contracts import (
    Artifact,
    BatchBuildInput,
    BatchBuildResult,
    BatchItemError,
    BuildInput,
    CreateInput,
    DeleteInput,
    DeleteResult,
    RunInput,
    TestEnvArtifact,
    TestReport,
    _Rooted,
    _Wire,
)
from aperture.engines.schemas import batch_input_schema, schema_of
from aperture.model import (
    ApertureError,
    ConfigError,
    ExecutionError,
    InputValidationError,
    Tool,
    ToolAnnotations,
    ToolId,
    UnknownToolError,
)
from aperture.model.ids import validate_part
from aperture.model.validation import ArgumentValidator

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
"""Report progress: `(progress, total, message)`."""
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=_Wire)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineResult:
    """One tool call's answer: text for the model, structured content for programs, and the error flag."""

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False


Handler = Callable[[Any, "ProgressFn | None"], Awaitable[EngineResult]]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineTool:
    """A tool an engine offers, with everything needed to list it and call it."""

    name: str
    description: str
    input_model: type[_Wire]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: ToolAnnotations
    tags: tuple[str, ...]
    handler: Handler
    validator: ArgumentValidator

    def to_tool(self, namespace: str, name: str | None = None, *, kind: str = "engine") -> Tool:
        """The tool as the gateway lists it, as `namespace:name` (default name: the tool's own)."""
        return Tool(
            id=ToolId(namespace, name or self.name),
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            tags=self.tags,
            annotations=self.annotations,
            backend_kind=kind,
        )


_CREATES = ToolAnnotations(read_only=False, destructive=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recipe:
    """How one engine tool is made from a role's function: its name, wording, contract and handler."""

    name: str
    summary: str
    input_model: type[_Wire]
    output_model: type[_Wire]
    method: str
    annotations: ToolAnnotations = _CREATES
    tags: tuple[str, ...] = ("engine",)
    input_schema: Callable[[], dict[str, Any]] | None = None


_ROLES: dict[str, tuple[_Recipe, ...]] = {
    "builder": (
        _Recipe(
            name="build",
            summary="Build one artifact with the {engine} engine. Returns the artifact: name, type, location, "
            "version (git commit) and timestamp.",
            input_model=BuildInput,
            output_model=Artifact,
            method="_build",
            tags=("engine", "build"),
        ),
        _Recipe(
            name="buildBatch",
            summary="Build several artifacts with the {engine} engine in one call; each item is built on its own "
            "and failures are reported per item, never stopping the rest.",
            input_model=BatchBuildInput,
            output_model=BatchBuildResult,
            method="_build_batch",
            tags=("engine", "build"),
            input_schema=batch_input_schema,
        ),
    ),
    "test_runner": (
        _Recipe(
            name="run",
            summary="Run a test suite with the {engine} engine and get a test report: status, passed / failed / "
            "skipped counts, duration and coverage.",
            input_model=RunInput,
            output_model=TestReport,
            method="_run_tests",
            tags=("engine", "test"),
        ),
    ),
    "create": (
        _Recipe(
            name="create",
            summary="Create a test environment with the {engine} engine: provisions resources for a test run and "
            "returns their files (relative to tmpDir), metadata and managed resources.",
            input_model=CreateInput,
            output_model=TestEnvArtifact,
            method="_create",
            tags=("engine", "testenv"),
        ),
    ),
    "delete": (
        _Recipe(
            name="delete",
            summary="Delete a test environment that the {engine} engine created; pass the metadata `create` "
            "returned. Best effort: deleting what is already gone succeeds.",
            input_model=DeleteInput,
            output_model=DeleteResult,
            method="_delete",
            # Not marked idempotent: the cache would answer a second delete without running it.
            annotations=ToolAnnotations(read_only=False, destructive=True),
            tags=("engine", "testenv"),
        ),
    ),
}


class Engine:
    """A named, versioned set of engine tools made from plain (sync or async) functions.

    Register a builder (`@engine.builder`: tools `build` and `buildBatch`), a test runner
    (`@engine.test_runner`: tool `run`) and/or a test-environment subengine (`@engine.create` and
    `@engine.delete`). Each function takes the tool's input model and returns its result model (or a
    mapping of the same shape); raise to report a failure: the message reaches the caller.
    """

    def __init__(self, name: str, *, version: str = "0.0.0", description: str = "") -> None:
        validate_part(name, "engine name")
        self.name = name
        self.version = version
        self.description = description.strip()
        self._tools: dict[str, EngineTool] = {}

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, version={self.version!r}, tools={list(self._tools)})"

    @property
    def tools(self) -> Mapping[str, EngineTool]:
        return self._tools

    # --- registration ---------------------------------------------------------------------------

    def builder(self, fn: F | None = None, /, *, description: str | None = None) -> Any:
        """Register a build function `(BuildInput) -> Artifact` as the tools `build` and `buildBatch`."""
        return self._role("builder", fn, description)

    def test_runner(self, fn: F | None = None, /, *, description: str | None = None) -> Any:
        """Register a test function `(RunInput) -> TestReport` as the tool `run`.

        Tests that fail are a report with status `failed` (an error result that still carries the
        report); raise only when the tests could not run at all.
        """
        return self._role("test_runner", fn, description)

    def create(self, fn: F | None = None, /, *, description: str | None = None) -> Any:
        """Register `(CreateInput) -> TestEnvArtifact` as the tool `create` (pair it with `@engine.delete`)."""
        return self._role("create", fn, description)

    def delete(self, fn: F | None = None, /, *, description: str | None = None) -> Any:
        """Register `(DeleteInput) -> None` as the tool `delete`: best effort, and a second delete succeeds."""
        return self._role("delete", fn, description)

    def _role(self, role: str, fn: F | None, description: str | None) -> Any:
        """Use as `@engine.role` or `@engine.role(description=...)`: registers the role's tools for `func`."""

        def register(func: F) -> F:
            _check_signature(func, role.replace("_", " "), _ROLES[role][0].input_model.__name__)
            about = description or self.description
            for recipe in _ROLES[role]:
                self._add(recipe, functools.partial(getattr(self, recipe.method), func), about)
            return func

        return register(fn) if fn is not None else register

    def _add(self, recipe: _Recipe, handler: Handler, about: str) -> None:
        if recipe.name in self._tools:
            raise TypeError(f"engine '{self.name}' already registered a '{recipe.name}' tool; register each kind once")
        schema = recipe.input_schema() if recipe.input_schema else schema_of(recipe.input_model)
        self._tools[recipe.name] = EngineTool(
            name=recipe.name,
            description=" ".join(f"{recipe.summary.format(engine=self.name)} {about}".split()),
            input_model=recipe.input_model,
            input_schema=schema,
            output_schema=schema_of(recipe.output_model, mode="serialization"),
            annotations=recipe.annotations,
            tags=recipe.tags,
            handler=handler,
            validator=ArgumentValidator(schema, tool_id=recipe.name),
        )

    def main(self, argv: Sequence[str] | None = None) -> None:
        """The engine's command line: `--mcp` serves it over stdio, `--version`, `--list`, or call one tool."""
        from aperture.engines.server import main  # the SDK's server, only when serving

        raise SystemExit(main(self, argv))

    def check(self) -> None:
        """Fail at startup, with the fix, for an engine that cannot serve.

        Raises:
            ConfigError: no tools registered, or `create` without `delete` (or the reverse).
        """
        if not self._tools:
            raise ConfigError(
                f"engine '{self.name}' has no tools; register a function with @engine.builder, "
                "@engine.test_runner, or @engine.create and @engine.delete"
            )
        if ("create" in self._tools) != ("delete" in self._tools):
            have, missing = ("create", "delete") if "create" in self._tools else ("delete", "create")
            raise ConfigError(f"engine '{self.name}' has @engine.{have} but no @engine.{missing}; register both")

    # --- calls ----------------------------------------------------------------------------------

    async def call(
        self, tool: str, args: Mapping[str, Any] | None, progress: ProgressFn | None = None, *, checked: bool = False
    ) -> EngineResult:
        """Validate `args` (unless `checked`: the gateway's runner already did, against the same schema), run the
        tool's function and shape its answer.

        Raises:
            ApertureError: `UnknownToolError`, `InputValidationError` for arguments or paths to fix,
                `ExecutionError` when the function fails or returns something unusable.
        """
        entry = self._tools.get(tool)
        if entry is None:
            raise UnknownToolError(tool, sorted(self._tools))
        request = _parse(entry, args or {}, checked=checked)
        return await entry.handler(request, progress)

    async def _build(self, fn: Callable[..., Any], request: BuildInput, progress: ProgressFn | None) -> EngineResult:
        artifact = await self._build_one(fn, request)
        version = f", version {artifact.version}" if artifact.version else ""
        summary = f"Built {artifact.type} '{artifact.name}' at {artifact.location}{version}."
        return _answer(summary, artifact)

    async def _build_one(self, fn: Callable[..., Any], request: BuildInput) -> Artifact:
        self._check_engine(request.engine)
        request = _rooted(request)
        updates: dict[str, Any] = {}
        if request.src:
            updates["src"] = str(request.resolve(request.src, what="src"))
        if request.dest:
            updates["dest"] = str(request.resolve(request.dest, must_exist=False, what="dest"))
        value = await _invoke(fn, request.model_copy(update=updates), "Build")
        return _result(Artifact, value, f"engine '{self.name}': the build function")

    def _check_engine(self, value: str) -> None:
        """Refuse an `engine` argument that names another engine: the caller picked the wrong tool.

        Accepted: the engine's name, a URI whose last path segment (less an `@version`) is the name (forge's
        `go://name`, `go://github.com/o/r/cmd/name@v1`), or `alias://<name>`: an orchestrator's alias, which
        it resolves to its engines before calling them, so the name is the orchestrator's to check.

        Raises:
            InputValidationError: saying which values this engine accepts.
        """
        scheme, sep, rest = value.partition("://")
        if not sep:
            named = value == self.name
        elif scheme == "alias":
            named = bool(rest)
        else:
            named = rest.rsplit("/", 1)[-1].split("@", 1)[0] == self.name
        if not named:
            raise InputValidationError(
                f"engine {value!r} does not name this engine ('{self.name}'). Give '{self.name}' or a URI naming it "
                f"('go://{self.name}'), or an orchestrator's 'alias://<name>'; to build with another engine, call "
                "that engine's build tool.",
                details={"accepted": [self.name, f"<scheme>://{self.name}", "alias://<name>"]},
            )

    async def _build_batch(
        self, fn: Callable[..., Any], request: BatchBuildInput, progress: ProgressFn | None
    ) -> EngineResult:
        build = self._tools["build"]
        artifacts: list[Artifact] = []
        errors: list[BatchItemError] = []
        total = len(request.specs)
        for index, raw in enumerate(request.specs):
            name = raw.get("name") if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) else ""
            try:
                item = _parse(build, raw, where=f"specs[{index}]")
                artifacts.append(await self._build_one(fn, item))
            except ApertureError as exc:
                errors.append(BatchItemError(index=index, name=name or "", error=exc.message))
            if progress is not None:
                await progress(index + 1, total, f"{index + 1}/{total} {name}".strip())
        summary = f"Built {len(artifacts)} of {total}."
        if errors:
            failed = "; ".join(f"#{e.index} '{e.name}': {e.error.splitlines()[0]}" for e in errors)
            summary += f" Failed: {failed}"
        result = BatchBuildResult(artifacts=artifacts, errors=errors, summary=summary, count=len(artifacts))
        return _answer(summary, result, is_error=bool(errors))

    async def _run_tests(self, fn: Callable[..., Any], request: RunInput, progress: ProgressFn | None) -> EngineResult:
        request = _rooted(request)
        started, clock = rfc3339_now(), time.perf_counter()
        value = await _invoke(fn, request, "Test run")
        report = _result(TestReport, value, f"engine '{self.name}': the test runner")
        report = report.model_copy(
            update={
                "id": report.id or request.id,
                "stage": report.stage or request.stage,
                "start_time": report.start_time or started,
                "duration": report.duration or round(time.perf_counter() - clock, 3),
            }
        )
        stats = report.test_stats
        summary = (
            f"Tests {report.status} ({request.name}, stage {report.stage}): {stats.passed} passed, "
            f"{stats.failed} failed, {stats.skipped} skipped of {stats.total} in {report.duration:.2f} s."
        )
        if report.error_message:
            summary += f" {report.error_message}"
        # A failed test run is an error result that still carries the whole report.
        return _answer(summary, report, is_error=report.status == "failed")

    async def _create(self, fn: Callable[..., Any], request: CreateInput, progress: ProgressFn | None) -> EngineResult:
        request = _rooted(request)
        tmp = request.resolve(request.tmp_dir, must_exist=False, what="tmpDir")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputValidationError(f"tmpDir '{request.tmp_dir}' cannot be created: {exc}") from exc
        value = await _invoke(fn, request.model_copy(update={"tmp_dir": str(tmp)}), "Create")
        made = _result(TestEnvArtifact, value, f"engine '{self.name}': the create function")
        env = request.env_propagation.apply(made.env) if request.env_propagation else made.env
        made = made.model_copy(
            update={"test_id": made.test_id or request.test_id, "files": _relative_files(made.files, tmp), "env": env}
        )
        summary = (
            f"Created test environment '{made.test_id}' (stage {request.stage}): {_count(made.files, 'file')}, "
            f"{_count(made.managed_resources, 'managed resource')}. Pass its metadata to delete."
        )
        return _answer(summary, made)

    async def _delete(self, fn: Callable[..., Any], request: DeleteInput, progress: ProgressFn | None) -> EngineResult:
        value = await _invoke(fn, _rooted(request), "Delete")
        message = value if isinstance(value, str) else f"Deleted test environment '{request.test_id}'."
        return _answer(message, DeleteResult(test_id=request.test_id, message=message))


def _check_signature(fn: Any, what: str, model: str) -> None:
    if not callable(fn):
        raise TypeError(f"@engine.{what.replace(' ', '_')} must decorate a function, got {fn!r}")
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return  # builtins without a signature: trust the caller
    if len(params) != 1:
        raise TypeError(
            f"the {what} function {getattr(fn, '__name__', fn)!r} must take exactly one argument, the {model}; "
            f"it takes {len(params)}"
        )


def _parse(entry: EngineTool, args: Mapping[str, Any], *, where: str = "", checked: bool = False) -> Any:
    """Arguments checked against the tool's schema (all problems at once), then as its input model."""
    try:
        clean = args if checked else entry.validator.validate(args)
    except InputValidationError as exc:
        if where:
            raise InputValidationError(f"{where}: {exc.message}", details=exc.details) from exc
        raise
    try:
        return entry.input_model.model_validate(clean)
    except pydantic.ValidationError as exc:  # what JSON Schema cannot say (there is little)
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise InputValidationError(f"{where + ': ' if where else ''}invalid arguments: {problems}") from exc


_DIRECTORIES = ("tmp_dir", "build_dir", "testenv_tmp_dir")


def _rooted(request: M) -> M:
    """The request with `rootDir` and the other directories made absolute (relative ones against `rootDir`).

    A `rootDir` that is not a directory fails fast; the other directories need not exist yet.
    """
    if not isinstance(request, _Rooted):
        return request
    rooted: _Rooted = request
    if rooted.root_dir:
        root = Path(rooted.root_dir).expanduser().resolve()
        if not root.is_dir():
            raise InputValidationError(
                f"rootDir '{rooted.root_dir}' is not an existing directory. Give the project's root directory."
            )
        rooted = rooted.model_copy(update={"root_dir": str(root)})
    updates = {
        name: str(rooted.resolve(value, must_exist=False, what=name))
        for name in _DIRECTORIES
        if (value := getattr(rooted, name, None))
    }
    return cast(M, rooted.model_copy(update=updates) if updates else rooted)


async def _invoke(fn: Callable[..., Any], request: Any, what: str) -> Any:
    """Call the engine's function (sync ones in a worker thread); its exceptions become `ExecutionError`s."""
    try:
        if inspect.iscoroutinefunction(fn):
            value = await fn(request)
        else:
            # Abandoned on cancel: a thread cannot be interrupted, but the caller is freed at once.
            value = await anyio.to_thread.run_sync(functools.partial(fn, request), abandon_on_cancel=True)
        if inspect.isawaitable(value):
            value = await value
    except ApertureError:
        raise  # raised on purpose: a spec error, or a failure the engine already worded
    except Exception as exc:
        logger.info("%s failed in %r", what, fn, exc_info=True)
        detail = str(exc) if isinstance(exc, RuntimeError) and str(exc) else f"{type(exc).__name__}: {exc}"
        raise ExecutionError(f"{what} failed: {detail}") from exc
    return value


def _result(model: type[M], value: Any, who: str) -> M:
    """The function's return value as `model`; nothing, or the wrong shape, is the engine's fault."""
    if value is None:
        raise ExecutionError(f"{who} returned nothing; it must return {_a(model.__name__)}. A fault of the engine.")
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping | pydantic.BaseModel):
        raise ExecutionError(
            f"{who} returned a {type(value).__name__}; it must return {_a(model.__name__)} "
            "(or a mapping of its fields). A fault of the engine."
        )
    data = value.model_dump(by_alias=True) if isinstance(value, pydantic.BaseModel) else value
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise ExecutionError(
            f"{who} returned an invalid {model.__name__} ({problems}). A fault of the engine."
        ) from exc


def _count(items: Any, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "AEIOU" else f"a {noun}"


def _relative_files(files: Mapping[str, str], tmp: Path) -> dict[str, str]:
    """Files given as absolute paths inside tmpDir become relative to it, as the contract says."""
    out = {}
    for key, path in files.items():
        candidate = Path(path)
        inside = candidate.is_absolute() and candidate.is_relative_to(tmp)
        out[key] = str(candidate.relative_to(tmp)) if inside else path
    return out


def _answer(summary: str, value: _Wire, *, is_error: bool = False) -> EngineResult:
    data = value.to_wire()
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return EngineResult(text=f"{summary}\n\n{text}", structured=data, is_error=is_error)
