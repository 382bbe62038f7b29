"""`kind: capabilities`: REST endpoints described in YAML capability files (docs/capabilities.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext
from aperture.execution import CapabilityBackend, CapabilitySettings, HttpSettings


class CapabilitiesBackendConfig(BackendSettings):
    """REST endpoints described in YAML capability files (see docs/capabilities.md)."""

    kind: Literal["capabilities"]
    directories: list[str] = Field(
        default_factory=list, description="Directories of *.yaml / *.yml capability files, relative to this file."
    )
    directory: str | None = Field(None, description="One directory (shorthand for directories: [DIR]).")
    watch: bool = Field(True, description="Reload when a file changes (also: aperture capabilities reload).")
    allow_private_networks: bool = Field(
        False, description="Allow requests to private, loopback and link-local addresses (off: public APIs only)."
    )
    timeout: float | None = Field(None, gt=0, description="Seconds a call may take, retries and fallbacks included.")
    request_timeout: float | None = Field(
        None, gt=0, description="Seconds per HTTP request, for every provider (default: each provider's timeout)."
    )
    retries: int = Field(2, ge=0, le=10, description="Retries of connection errors (and timeouts of safe methods).")
    backoff: float = Field(0.2, ge=0, description="Seconds before the first retry; doubles each time.")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed (each one re-checked).")
    max_response_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Larger answers are refused.")

    @model_validator(mode="after")
    def _some_directory(self) -> CapabilitiesBackendConfig:
        if not self.directories and self.directory is None:
            raise ValueError("give 'directories' (a list) or 'directory': where the capability files are")
        return self

    def all_directories(self) -> list[str]:
        """`directory` and `directories` together."""
        return [*([self.directory] if self.directory else []), *self.directories]


def build_capabilities(spec: CapabilitiesBackendConfig, context: BuildContext) -> CapabilityBackend:
    """The backend of the capability files (it loads them when started); the context's redactor learns the
    credentials they name, as they load."""
    settings = CapabilitySettings(
        watch=spec.watch,
        allow_private_networks=spec.allow_private_networks,
        http=HttpSettings(
            retries=spec.retries,
            backoff=spec.backoff,
            max_redirects=spec.max_redirects,
            max_response_bytes=spec.max_response_bytes,
            request_timeout=spec.request_timeout,
        ),
    )
    directories = [context.resolve(d) for d in spec.all_directories()]
    return CapabilityBackend(spec.name, directories, settings, redactor=context.redactor)


CAPABILITIES = BackendKind("capabilities", CapabilitiesBackendConfig, build_capabilities)
