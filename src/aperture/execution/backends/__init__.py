"""Backends that ship with Aperture, one module each."""

from aperture.execution.backends.python import PythonBackend, ToolSpec, tool

__all__ = ["PythonBackend", "ToolSpec", "tool"]
