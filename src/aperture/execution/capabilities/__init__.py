"""REST capabilities: HTTP endpoints described in YAML files, served as tools and reloaded when the files change."""

from aperture.execution.capabilities.backend import CapabilityBackend, CapabilitySettings
from aperture.execution.capabilities.http import CapabilityExecutor, HttpSettings
from aperture.execution.capabilities.loader import (
    CapabilityLoader,
    CapabilitySet,
    LoadProblem,
    LoadReport,
    capability_files,
    parse_file,
    pin_digest,
)
from aperture.execution.capabilities.netguard import PrivateNetworkError
from aperture.execution.capabilities.spec import Capability, CapabilityFile, SpecError

__all__ = [
    "Capability",
    "CapabilityBackend",
    "CapabilityExecutor",
    "CapabilityFile",
    "CapabilityLoader",
    "CapabilitySet",
    "CapabilitySettings",
    "HttpSettings",
    "LoadProblem",
    "LoadReport",
    "PrivateNetworkError",
    "SpecError",
    "capability_files",
    "parse_file",
    "pin_digest",
]
