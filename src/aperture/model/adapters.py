"""Render a `Tool` in the shapes other systems expect: MCP, OpenAI function calling, Anthropic tools."""

from __future__ import annotations

import re
from typing import Any

import mcp_types

from aperture.model.tool import Tool

# OpenAI and Anthropic both accept names of 1-64 characters from [A-Za-z0-9_-].
_FUNCTION_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
FUNCTION_NAME_LIMIT = 64


def function_name(tool: Tool, separator: str = "__") -> str:
    """A name valid for OpenAI and Anthropic: `namespace__name`, unsafe characters replaced by `_`."""
    name = _FUNCTION_NAME_UNSAFE.sub("_", f"{tool.namespace}{separator}{tool.name}")
    return name[:FUNCTION_NAME_LIMIT]


def to_mcp(tool: Tool, *, name: str | None = None) -> mcp_types.Tool:
    """The MCP `Tool` shape (as in `tools/list`), named `name` or the tool's own name."""
    annotations = tool.annotations.to_dict()
    return mcp_types.Tool.model_validate(
        {
            "name": name or tool.name,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": dict(tool.input_schema),
            "outputSchema": dict(tool.output_schema) if tool.output_schema is not None else None,
            "annotations": annotations or None,
        }
    )


def to_openai(tool: Tool, *, name: str | None = None, strict: bool = False) -> dict[str, Any]:
    """The OpenAI Chat Completions function-calling shape: `{"type": "function", "function": {...}}`."""
    function: dict[str, Any] = {
        "name": name or function_name(tool),
        "description": tool.description,
        "parameters": dict(tool.input_schema),
    }
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def to_anthropic(tool: Tool, *, name: str | None = None) -> dict[str, Any]:
    """The Anthropic Messages API tool shape: `{"name", "description", "input_schema"}`."""
    return {
        "name": name or function_name(tool),
        "description": tool.description,
        "input_schema": dict(tool.input_schema),
    }
