"""Backend kinds: one module each (its configuration model and its factory), and the registry they are in.

Adding a kind: write its module here (a `BackendSettings` model with `kind: Literal["<name>"]`, a factory,
a `BackendKind`) and add that `BackendKind` to `BUILTIN_KINDS` (docs/backend-kinds.md).
"""

from typing import Any

from aperture.config.kinds.a2a import A2A, A2aBackendConfig
from aperture.config.kinds.capabilities import CAPABILITIES, CapabilitiesBackendConfig
from aperture.config.kinds.engine import ENGINE, EngineBackendConfig
from aperture.config.kinds.grpc import GRPC, GrpcBackendConfig, GrpcTlsConfig
from aperture.config.kinds.mcp import MCP, InheritEnv, McpBackendConfig, check_inherit_env
from aperture.config.kinds.python import PYTHON, PythonBackendConfig
from aperture.config.kinds.registry import (
    BackendConfig,
    BackendKind,
    BackendSettings,
    BuildContext,
    Section,
    backend_kinds,
    backend_name,
    kind_named,
    on_kinds_changed,
    register_kind,
    unregister_kind,
)

BUILTIN_KINDS: tuple[BackendKind[Any], ...] = (PYTHON, MCP, CAPABILITIES, ENGINE, GRPC, A2A)
"""The kinds every gateway has, in the order `kind:` errors list them."""

for _kind in BUILTIN_KINDS:
    register_kind(_kind)

__all__ = [
    "A2A",
    "BUILTIN_KINDS",
    "CAPABILITIES",
    "ENGINE",
    "GRPC",
    "MCP",
    "PYTHON",
    "A2aBackendConfig",
    "BackendConfig",
    "BackendKind",
    "BackendSettings",
    "BuildContext",
    "CapabilitiesBackendConfig",
    "EngineBackendConfig",
    "GrpcBackendConfig",
    "GrpcTlsConfig",
    "InheritEnv",
    "McpBackendConfig",
    "PythonBackendConfig",
    "Section",
    "backend_kinds",
    "backend_name",
    "check_inherit_env",
    "kind_named",
    "on_kinds_changed",
    "register_kind",
    "unregister_kind",
]
