"""`kind: engine`: build, test and test-environment engines (aperture.engines), mounted in-process."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext
from aperture.engines import EngineBackend


class EngineBackendConfig(BackendSettings):
    """Build, test and test-environment engines (aperture.engines), mounted in-process (see docs/engines.md)."""

    kind: Literal["engine"]
    engines: list[str] = Field(
        min_length=1,
        description="Engines as 'module' or 'module:attribute'; with several, tool names get the engine's name "
        "as a prefix (wheel-builder.build).",
    )
    path: str | None = Field(None, description="Directory to import the modules from, relative to this file.")
    timeout: float | None = Field(
        600.0, gt=0, description="Seconds a call may take (builds and test runs take longer than most tools)."
    )


def build_engine(spec: EngineBackendConfig, context: BuildContext) -> EngineBackend:
    """The backend of the engines' tools."""
    path = context.resolve(spec.path) if spec.path else None
    return EngineBackend.from_modules(spec.name, spec.engines, path=path)


ENGINE = BackendKind("engine", EngineBackendConfig, build_engine)
