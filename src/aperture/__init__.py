"""Aperture: one MCP endpoint in front of many tool backends.

Tool authors mostly need `tool`, the decorator that turns a plain function into a tool. It loads on
first use, so `import aperture.engines` (a stand-alone engine) does not pay for the whole gateway.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aperture.execution.backends.python import tool

__version__ = "0.1.0"
__all__ = ["__version__", "tool"]


def __getattr__(name: str) -> Any:
    if name == "tool":
        from aperture.execution.backends.python import tool

        return tool
    raise AttributeError(f"module 'aperture' has no attribute {name!r}")
