"""Aperture: one MCP endpoint in front of many tool backends.

Tool authors mostly need `tool`, the decorator that turns a plain function into a tool.
"""

from aperture.execution.backends.python import tool

__version__ = "0.1.0"
__all__ = ["__version__", "tool"]
