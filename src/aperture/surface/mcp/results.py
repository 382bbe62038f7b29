"""Shape gateway answers as MCP `CallToolResult`s: JSON text for people, `structuredContent` for programs (the
structured data is the gateway's, `aperture.gateway.replies`; only the wire shape is MCP's)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types

from aperture.execution import RunResult
from aperture.gateway.replies import error_data, run_data
from aperture.model import ApertureError


def json_result(data: dict[str, Any], *, is_error: bool = False) -> mcp_types.CallToolResult:
    """A meta-tool answer: compact JSON text plus the same data as structured content (marked as an error for
    an answer that reports a failure in its own shape, such as a chain stopped at a step)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=text)], structured_content=data, is_error=is_error
    )


def error_result(error: ApertureError) -> mcp_types.CallToolResult:
    """A failure the model can act on: the message as text, the structured error alongside."""
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=error.message)],
        structured_content=error_data(error),
        is_error=True,
    )


def run_result(result: RunResult) -> mcp_types.CallToolResult:
    """A `run_tool` answer: the tool's own content blocks unchanged, and its structured result wrapped."""
    if result.error is not None:
        return error_result(result.error)
    return mcp_types.CallToolResult(
        content=list(result.content), structured_content=run_data(result), is_error=result.is_error
    )


def passthrough_result(result: RunResult) -> mcp_types.CallToolResult:
    """A directly listed tool's answer: its own content and structured content, unchanged."""
    if result.error is not None:
        return error_result(result.error)
    return mcp_types.CallToolResult(
        content=list(result.content), structured_content=result.structured, is_error=result.is_error
    )
