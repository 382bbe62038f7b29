"""Composition: toolsets (named views of the catalog), skills (recipes and instructions) and chains.

Above execution and discovery, below ops, config, the gateway and the surfaces: it imports none of them. It
gets the ops-wrapped way to run a tool, and the caller, through `CallContext`, so every step of a chain or
skill runs as its caller with every rule applied.
"""

from aperture.compose.chain import (
    ChainResult,
    ChainSettings,
    ChainStep,
    StepResult,
    TemplateError,
    fill_templates,
    run_chain,
)
from aperture.compose.skills import (
    InstructionSkill,
    Limits,
    Recipe,
    SkillBackend,
    SkillHost,
    SkillReport,
    SkillsSettings,
)
from aperture.compose.templates import Expression, ExpressionError, Template
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
    "ChainResult",
    "ChainSettings",
    "ChainStep",
    "Expression",
    "ExpressionError",
    "InstructionSkill",
    "Limits",
    "Recipe",
    "SkillBackend",
    "SkillHost",
    "SkillReport",
    "SkillsSettings",
    "StepResult",
    "Template",
    "TemplateError",
    "ToolsetConfig",
    "ToolsetProblem",
    "ToolsetRule",
    "ToolsetView",
    "Toolsets",
    "fill_templates",
    "hint_of",
    "run_chain",
]
