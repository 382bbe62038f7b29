"""Engines: plain functions become build, test and test-environment tools (seed 003).

An `Engine` serves stand-alone as an MCP server (`engine.main()`, `python -m my_engine --mcp`) and
mounts in the gateway as a backend (`kind: engine`).
"""

from typing import TYPE_CHECKING, Any

from aperture.engines.artifacts import (
    UNKNOWN_VERSION,
    create_artifact,
    create_custom_artifact,
    create_versioned_artifact,
    git_version,
    rfc3339_now,
)
from aperture.engines.contracts import (
    Artifact,
    BatchBuildInput,
    BatchBuildResult,
    BatchItemError,
    BuildInput,
    Coverage,
    CreateInput,
    DeleteInput,
    DeleteResult,
    Dependency,
    EnvPropagation,
    RunInput,
    TestEnvArtifact,
    TestReport,
    TestStats,
)
from aperture.engines.engine import Engine, EngineResult, EngineTool
from aperture.model import ExecutionError, InputValidationError

if TYPE_CHECKING:
    from aperture.engines.backend import EngineBackend, load_engine

from aperture.engines.spec import (
    SpecError,
    get_bool,
    get_int,
    get_str,
    get_str_list,
    get_str_map,
    require_bool,
    require_int,
    require_str,
    require_str_list,
    require_str_map,
)

__all__ = [
    "UNKNOWN_VERSION",
    "Artifact",
    "BatchBuildInput",
    "BatchBuildResult",
    "BatchItemError",
    "BuildInput",
    "Coverage",
    "CreateInput",
    "DeleteInput",
    "DeleteResult",
    "Dependency",
    "Engine",
    "EngineBackend",
    "EngineResult",
    "EngineTool",
    "EnvPropagation",
    "ExecutionError",
    "InputValidationError",
    "RunInput",
    "SpecError",
    "TestEnvArtifact",
    "TestReport",
    "TestStats",
    "create_artifact",
    "create_custom_artifact",
    "create_versioned_artifact",
    "get_bool",
    "get_int",
    "get_str",
    "get_str_list",
    "get_str_map",
    "git_version",
    "load_engine",
    "require_bool",
    "require_int",
    "require_str",
    "require_str_list",
    "require_str_map",
    "rfc3339_now",
]


def __getattr__(name: str) -> Any:
    # The gateway side (the backend, and with it the execution layer) loads only when mounting.
    if name in ("EngineBackend", "load_engine"):
        from aperture.engines import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'aperture.engines' has no attribute {name!r}")
