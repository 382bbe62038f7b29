"""Configuration: the YAML file's schema and its loader."""

from aperture.config.loader import interpolate, load_config, parse_config
from aperture.config.schema import (
    BackendConfig,
    Config,
    ExecutionConfig,
    PythonBackendConfig,
    SearchConfig,
    ServerConfig,
)

__all__ = [
    "BackendConfig",
    "Config",
    "ExecutionConfig",
    "PythonBackendConfig",
    "SearchConfig",
    "ServerConfig",
    "interpolate",
    "load_config",
    "parse_config",
]
