"""gRPC servers as tools: one tool per unary and server-streaming method (the `grpc` extra: grpcio and friends).

The settings import without the extra; the backend and its parts load on first use. The configuration entry is
`aperture.config.kinds.grpc`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from aperture.execution.grpc.settings import KIND, ChannelSettings, GrpcSettings, TlsFiles

if TYPE_CHECKING:
    from aperture.execution.grpc.backend import GrpcBackend
    from aperture.execution.grpc.discovery import Discovered, DiscoveryError
    from aperture.execution.grpc.schema import message_schema

INSTALL_HINT = "pip install 'aperture-gateway[grpc]'"
_LAZY = {
    "Discovered": "discovery",
    "DiscoveryError": "discovery",
    "GrpcBackend": "backend",
    "message_schema": "schema",
}

__all__ = [
    "INSTALL_HINT",
    "KIND",
    "REQUIRED_MODULES",
    "ChannelSettings",
    "Discovered",
    "DiscoveryError",
    "GrpcBackend",
    "GrpcSettings",
    "TlsFiles",
    "message_schema",
    "missing_modules",
]


REQUIRED_MODULES = ("grpc", "grpc_tools", "grpc_reflection", "grpc_health", "google.protobuf")
"""What the `grpc` extra installs (grpcio, grpcio-tools, grpcio-reflection, grpcio-health-checking, protobuf)."""


def missing_modules() -> list[str]:
    """The modules of the `grpc` extra that cannot be imported here (empty: the extra is installed)."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a missing parent package (google)
            found = False
        if not found:
            missing.append(name)
    return missing


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
