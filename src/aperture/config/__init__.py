"""Configuration: the YAML file's schema and its loader."""

from aperture.config.loader import from_mcp_servers, interpolate, load_config, parse_config
from aperture.config.schema import (
    BackendConfig,
    CapabilitiesBackendConfig,
    Config,
    EngineBackendConfig,
    ExecutionConfig,
    IntegrityConfig,
    McpBackendConfig,
    PythonBackendConfig,
    SearchConfig,
    ServerConfig,
    SessionsConfig,
)

__all__ = [
    "BackendConfig",
    "CapabilitiesBackendConfig",
    "Config",
    "EngineBackendConfig",
    "ExecutionConfig",
    "IntegrityConfig",
    "McpBackendConfig",
    "PythonBackendConfig",
    "SearchConfig",
    "ServerConfig",
    "SessionsConfig",
    "from_mcp_servers",
    "interpolate",
    "load_config",
    "parse_config",
]
