"""Execution: the `Backend` protocol, the registry, backends and the run pipeline."""

from aperture.execution.backend import (
    Backend,
    CallContext,
    ChangeNotifier,
    CountsUnrouted,
    HealthStatus,
    ProgressFn,
    ResourceSource,
    ToolResources,
)
from aperture.execution.backends import (
    HttpTarget,
    McpBackend,
    PythonBackend,
    RestartPolicy,
    StdioTarget,
    ToolSpec,
    UpstreamState,
    tool,
)
from aperture.execution.capabilities import CapabilityBackend, CapabilitySettings, HttpSettings, LoadProblem, LoadReport
from aperture.execution.definition_diff import DiffSpan, FieldDiff
from aperture.execution.integrity import FingerprintStore, HeldTool, IntegrityGuard, NewTools, Policy
from aperture.execution.registry import BackendRegistry, CatalogSnapshot
from aperture.execution.result import RunResult, ToolOutput, normalize
from aperture.execution.runner import Middleware, RunFn, Runner, ToolCall, closest_ids, raise_unavailable_or_unknown
from aperture.execution.watching import FileWatch

__all__ = [
    "Backend",
    "BackendRegistry",
    "CallContext",
    "CapabilityBackend",
    "CapabilitySettings",
    "CatalogSnapshot",
    "ChangeNotifier",
    "CountsUnrouted",
    "DiffSpan",
    "FieldDiff",
    "FileWatch",
    "FingerprintStore",
    "HealthStatus",
    "HeldTool",
    "HttpSettings",
    "HttpTarget",
    "IntegrityGuard",
    "LoadProblem",
    "LoadReport",
    "McpBackend",
    "Middleware",
    "NewTools",
    "Policy",
    "ProgressFn",
    "PythonBackend",
    "ResourceSource",
    "RestartPolicy",
    "RunFn",
    "RunResult",
    "Runner",
    "StdioTarget",
    "ToolCall",
    "ToolOutput",
    "ToolResources",
    "ToolSpec",
    "UpstreamState",
    "closest_ids",
    "normalize",
    "raise_unavailable_or_unknown",
    "tool",
]
