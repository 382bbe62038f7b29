"""Configuration: the YAML file's schema and its loader, which also reads the JSON files of MCP clients."""

from aperture.config.a2a import A2aConfig
from aperture.config.client_files import from_mcp_servers
from aperture.config.kinds import (
    BackendConfig,
    BackendKind,
    BackendSettings,
    BuildContext,
    CapabilitiesBackendConfig,
    EngineBackendConfig,
    GrpcBackendConfig,
    McpBackendConfig,
    PythonBackendConfig,
    backend_kinds,
    kind_named,
    register_kind,
    unregister_kind,
)
from aperture.config.loader import load_config, parse_config
from aperture.config.schema import (
    Config,
    ExecutionConfig,
    IntegrityConfig,
    SearchConfig,
    ServerConfig,
    SessionsConfig,
)
from aperture.config.variables import interpolate

__all__ = [
    "A2aConfig",
    "BackendConfig",
    "BackendKind",
    "BackendSettings",
    "BuildContext",
    "CapabilitiesBackendConfig",
    "Config",
    "EngineBackendConfig",
    "ExecutionConfig",
    "GrpcBackendConfig",
    "IntegrityConfig",
    "McpBackendConfig",
    "PythonBackendConfig",
    "SearchConfig",
    "ServerConfig",
    "SessionsConfig",
    "backend_kinds",
    "from_mcp_servers",
    "interpolate",
    "kind_named",
    "load_config",
    "parse_config",
    "register_kind",
    "unregister_kind",
]
