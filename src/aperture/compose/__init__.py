"""Composition: toolsets (named views of the catalog), skills (recipes and instructions) and chains.

Above execution and discovery, below ops, config, the gateway and the surfaces: it imports none of them. It
gets the ops-wrapped way to run a tool, and the caller, through `CallContext`, so every step of a chain or
skill runs as its caller with every rule applied.
"""

from aperture.compose.toolsets import (
    EMPTY_VIEW,
    TOOLSET_ID_PREFIX,
    ToolsetConfig,
    ToolsetProblem,
    ToolsetRule,
    Toolsets,
    ToolsetView,
    hint_of,
)

__all__ = [
    "EMPTY_VIEW",
    "TOOLSET_ID_PREFIX",
    "ToolsetConfig",
    "ToolsetProblem",
    "ToolsetRule",
    "ToolsetView",
    "Toolsets",
    "hint_of",
]
