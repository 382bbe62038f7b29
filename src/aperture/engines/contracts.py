"""The wire shapes of engine tools: what `build`, `run`, `create` and `delete` take and give back.

Field names on the wire are the camelCase names of forge's engine protocol (`rootDir`, `testID`,
`testStats`, ...), so an orchestrator written for forge engines can drive these; in Python they are
snake_case attributes. Inputs reject unknown fields (a misspelt `rootdir` is a mistake worth naming).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from aperture.model import InputValidationError


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON form, with the wire (camelCase) names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Rooted(_Wire):
    """An input with a project root that relative paths resolve against."""

    root_dir: str | None = Field(
        None, description="Project root directory; relative paths resolve against it (default: the engine's cwd)."
    )

    def resolve(self, path: str | Path, *, must_exist: bool = True, what: str = "path") -> Path:
        """`path` made absolute against `rootDir`; fails fast (a clear input error) when it must exist and doesn't.

        Raises:
            InputValidationError: naming the path as given, where it was looked for, and the fix.
        """
        given = Path(path).expanduser()
        resolved = given if given.is_absolute() else Path(self.root_dir or ".").resolve() / given
        if must_exist and not resolved.exists():
            base = f" (relative to rootDir {self.root_dir})" if self.root_dir and not given.is_absolute() else ""
            raise InputValidationError(
                f"{what} '{path}' not found: {resolved} does not exist{base}. "
                "Give an existing path, absolute or relative to rootDir."
            )
        return resolved


# --- builders -----------------------------------------------------------------------------------


class BuildInput(_Rooted):
    """What a builder is asked to build."""

    name: str = Field(description="Name of the artifact to build.", min_length=1)
    engine: str = Field(
        description="The engine asked to build it: this engine's name or a URI naming it ('wheel-builder', "
        "'go://wheel-builder'), or an orchestrator's 'alias://<name>'; another engine's name is refused.",
        min_length=1,
    )
    src: str | None = Field(None, description="Source directory or file, relative to rootDir; must exist.")
    dest: str | None = Field(None, description="Where the artifact goes, relative to rootDir.")
    spec: dict[str, Any] = Field(default_factory=dict, description="Engine-specific settings.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the build.")
    tmp_dir: str | None = Field(None, description="A scratch directory the build may use.")
    build_dir: str | None = Field(None, description="The project's build output directory.")


class Dependency(_Wire):
    """Something an artifact was built from: a file or an external package."""

    type: Literal["file", "package"] = Field(description="'file' (filePath) or 'package' (externalPackage).")
    file_path: str | None = None
    external_package: str | None = None
    semver: str | None = None
    timestamp: str | None = None


class Artifact(_Wire):
    """A build's product."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Name of the artifact.", min_length=1)
    type: str = Field(description="Kind of artifact: binary, wheel, container, generated, ...", min_length=1)
    location: str = Field(description="Where it is: a path or an image reference.", min_length=1)
    version: str = Field("", description="Git commit of the sources, a custom version, or empty.")
    timestamp: str = Field("", description="When it was built (RFC 3339, UTC).")
    dependencies: list[Dependency] = Field(default_factory=list, description="What it was built from.")


class BatchBuildInput(_Wire):
    """Several builds in one call."""

    specs: list[dict[str, Any]] = Field(
        description="Build inputs, each as for `build` (name and engine required); each is checked on its own, "
        "so one bad item fails alone.",
        min_length=1,
    )


class BatchItemError(_Wire):
    index: int = Field(description="Position of the failed item in `specs` (from 0).")
    name: str = Field(description="Its `name`, or '' when it had none.")
    error: str = Field(description="What went wrong and how to fix it.")


class BatchBuildResult(_Wire):
    artifacts: list[Artifact] = Field(description="The artifacts built, in the order of `specs`.")
    errors: list[BatchItemError] = Field(description="The items that failed, each with its reason.")
    summary: str = Field(description="One line: how many were built and which failed.")
    count: int = Field(description="How many artifacts were built.")


# --- test runners -------------------------------------------------------------------------------


class RunInput(_Rooted):
    """A test run request."""

    id: str = Field(description="Identifier of this test run.", min_length=1)
    stage: str = Field(description="The test stage, e.g. 'unit' or 'integration'.", min_length=1)
    name: str = Field(description="Name of the test suite to run.", min_length=1)
    spec: dict[str, Any] = Field(default_factory=dict, description="Engine-specific settings.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the tests.")
    tmp_dir: str | None = Field(None, description="Where reports and scratch files go.")
    build_dir: str | None = Field(None, description="The project's build output directory.")
    artifact_files: dict[str, str] = Field(default_factory=dict, description="Files of a test environment, by key.")
    testenv_tmp_dir: str | None = Field(None, description="The test environment's scratch directory.")
    testenv_metadata: dict[str, str] = Field(default_factory=dict, description="Metadata of the test environment.")


class TestStats(_Wire):
    __test__ = False  # not a pytest class

    total: int = Field(0, ge=0)
    passed: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    skipped: int = Field(0, ge=0)


class Coverage(_Wire):
    enabled: bool = False
    percentage: float = Field(0.0, ge=0, le=100)
    file_path: str = ""


class TestReport(_Wire):
    """The outcome of a test run. `status` 'failed' means tests failed, not that they could not run."""

    __test__ = False
    model_config = ConfigDict(extra="ignore")

    id: str = ""
    stage: str = ""
    status: Literal["passed", "failed"]
    start_time: str = Field("", description="When the run started (RFC 3339, UTC).")
    duration: float = Field(0.0, ge=0, description="Seconds.")
    test_stats: TestStats = Field(default_factory=TestStats)
    coverage: Coverage = Field(default_factory=Coverage)
    output_path: str = Field("", description="A report file (JUnit XML, ...), when there is one.")
    error_message: str = ""


# --- test environments --------------------------------------------------------------------------


class EnvPropagation(_Wire):
    """Which environment variables a subengine's `env` passes on to later steps (names or globs)."""

    disabled: bool = Field(False, description="Pass on no variables at all.")
    whitelist: list[str] = Field(default_factory=list, description="Only these (when given), e.g. KUBECONFIG, AWS_*.")
    blacklist: list[str] = Field(default_factory=list, description="Never these.")

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        """The variables of `env` that may pass on."""
        if self.disabled:
            return {}
        return {
            name: value
            for name, value in env.items()
            if (not self.whitelist or any(fnmatchcase(name, p) for p in self.whitelist))
            and not any(fnmatchcase(name, p) for p in self.blacklist)
        }


class CreateInput(_Rooted):
    """A request to provision one test-environment resource."""

    test_id: str = Field(alias="testID", description="Unique id of the test environment.", min_length=1)
    stage: str = Field(description="The test stage this environment is for.", min_length=1)
    tmp_dir: str = Field(description="Directory for the environment's files (created when missing).", min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict, description="Metadata from earlier subengines.")
    spec: dict[str, Any] = Field(default_factory=dict, description="Subengine-specific settings.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment accumulated so far.")
    env_propagation: EnvPropagation | None = Field(
        None, description="Which variables pass on to later subengines: {disabled, whitelist, blacklist}."
    )


class TestEnvArtifact(_Wire):
    """What `create` made: files (relative to tmpDir), metadata for later steps and for `delete`."""

    __test__ = False
    model_config = ConfigDict(extra="ignore")

    test_id: str = Field("", alias="testID")
    files: dict[str, str] = Field(default_factory=dict, description="Files by key, paths relative to tmpDir.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Pass these to `delete` and to later steps.")
    managed_resources: list[str] = Field(default_factory=list, description="What `delete` will remove.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the tests.")


class DeleteInput(_Rooted):
    """A request to remove what `create` made; deleting what is already gone succeeds."""

    test_id: str = Field(alias="testID", description="Id of the test environment.", min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict, description="The metadata `create` returned.")
    spec: dict[str, Any] = Field(default_factory=dict, description="Subengine-specific settings.")
    env: dict[str, str] = Field(default_factory=dict)
    tmp_dir: str | None = None


class DeleteResult(_Wire):
    test_id: str = Field(alias="testID")
    deleted: bool = True
    message: str = ""
