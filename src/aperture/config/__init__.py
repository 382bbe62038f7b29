"""Configuration: the YAML file's schema and its loader, which also reads the JSON files of MCP clients."""

from aperture.config.a2a import A2aConfig
from aperture.config.client_files import from_mcp_servers
from aperture.config.loader import load_config, parse_config
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
from aperture.config.variables import interpolate

__all__ = [
    "A2aConfig",
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
