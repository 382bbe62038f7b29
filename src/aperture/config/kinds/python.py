"""`kind: python`: plain Python functions marked with `@aperture.tool`, loaded from a module."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext
from aperture.execution import PythonBackend


class PythonBackendConfig(BackendSettings):
    """Plain Python functions marked with `@aperture.tool`, loaded from a module."""

    kind: Literal["python"]
    module: str = Field(description="Dotted name of the module that defines the tools.")
    path: str | None = Field(None, description="Directory to import the module from, relative to this file.")
    timeout: float | None = Field(None, gt=0, description="Seconds a call may take (default: execution.timeout).")


def build_python(spec: PythonBackendConfig, context: BuildContext) -> PythonBackend:
    """The backend of the module's tools."""
    path = context.resolve(spec.path) if spec.path else None
    return PythonBackend.from_module(spec.name, spec.module, path=path)


PYTHON = BackendKind("python", PythonBackendConfig, build_python)
