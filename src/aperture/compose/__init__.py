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

__all__ = ["ChainResult", "ChainSettings", "ChainStep", "StepResult", "TemplateError", "fill_templates", "run_chain"]
