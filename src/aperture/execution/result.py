"""Tool results: normalising what a backend returns into MCP content blocks plus structured content."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import mcp_types
import pydantic
import pydantic_core

from aperture.model import ApertureError, ExecutionError, Redactor, ToolId

ContentBlock = mcp_types.ContentBlock
CONTENT_TYPES = (
    mcp_types.TextContent,
    mcp_types.ImageContent,
    mcp_types.AudioContent,
    mcp_types.EmbeddedResource,
    mcp_types.ResourceLink,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutput:
    """A backend's result in normal form: content blocks, optional structured content, error flag."""

    content: tuple[ContentBlock, ...] = ()
    structured: Any = None
    is_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """The outcome of one `run_tool` call, success or failure.

    On failure `error` holds the structured error and `content` the text the model reads.
    """

    tool_id: str
    content: tuple[ContentBlock, ...] = ()
    structured: Any = None
    is_error: bool = False
    error: ApertureError | None = None
    duration_ms: float = 0.0
    extra: Mapping[str, Any] | None = None
    """What the caller asked to have beside the result (run_tool's `include_tool`, `include_backend`)."""

    @classmethod
    def failure(cls, tool_id: str, error: ApertureError, duration_ms: float = 0.0) -> RunResult:
        return cls(
            tool_id=tool_id,
            content=(mcp_types.TextContent(text=error.message),),
            is_error=True,
            error=error,
            duration_ms=duration_ms,
        )

    @property
    def text(self) -> str:
        """All text blocks joined: handy for people and tests."""
        return "\n".join(b.text for b in self.content if isinstance(b, mcp_types.TextContent))


def redact_result(result: RunResult, redactor: Redactor) -> RunResult:
    """`result` with the configured secrets taken out of its text, embedded text resources, structured content and
    error; the same object when there was nothing to take out."""
    if not redactor.active:
        return result
    content = tuple(_redact_block(block, redactor) for block in result.content)
    structured = redactor.data(result.structured)
    error = redactor.error(result.error) if result.error is not None else None
    if structured is result.structured and all(a is b for a, b in zip(content, result.content, strict=True)):
        return result
    return replace(result, content=content, structured=structured, error=error)


def _redact_block(block: ContentBlock, redactor: Redactor) -> ContentBlock:
    if isinstance(block, mcp_types.TextContent):
        text = redactor.text(block.text)
        return block if text == block.text else block.model_copy(update={"text": text})
    if isinstance(block, mcp_types.EmbeddedResource) and isinstance(block.resource, mcp_types.TextResourceContents):
        text = redactor.text(block.resource.text)
        if text != block.resource.text:
            return block.model_copy(update={"resource": block.resource.model_copy(update={"text": text})})
    return block


def to_jsonable(value: Any, *, tool_id: ToolId | str) -> Any:
    """Convert a Python value to JSON data (models, dataclasses, dates, sets, ... included).

    Raises:
        ExecutionError: when the value has no JSON form; the message names its type.
    """
    try:
        return pydantic_core.to_jsonable_python(value)
    except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
        raise ExecutionError(
            f"Tool '{tool_id}' returned a value of type {type(value).__name__} that cannot be converted to JSON "
            f"({exc}). This is a fault of the tool, not of your arguments.",
            tool_id=str(tool_id),
        ) from exc


def dump_json(data: Any) -> str:
    """Pretty JSON text for a content block."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def normalize(value: Any, *, tool_id: ToolId | str) -> ToolOutput:
    """Turn whatever a backend returned into a `ToolOutput`.

    `ToolOutput` passes through; MCP content blocks become the content; strings become text; bytes become
    a base64 blob resource; anything else becomes pretty JSON text plus structured content (objects as
    they are; other values are not structured, since MCP wants an object there).
    """
    if isinstance(value, ToolOutput):
        return value
    if isinstance(value, mcp_types.CallToolResult):
        return ToolOutput(
            content=tuple(value.content), structured=value.structured_content, is_error=bool(value.is_error)
        )
    if isinstance(value, CONTENT_TYPES):
        return ToolOutput(content=(value,))
    if isinstance(value, Sequence) and value and all(isinstance(v, CONTENT_TYPES) for v in value):
        return ToolOutput(content=tuple(value))
    if value is None:
        return ToolOutput(content=())
    if isinstance(value, str):
        return ToolOutput(content=(mcp_types.TextContent(text=value),))
    if isinstance(value, bytes | bytearray):
        blob = mcp_types.BlobResourceContents(
            uri=f"aperture://result/{tool_id}",
            mime_type="application/octet-stream",
            blob=base64.b64encode(bytes(value)).decode("ascii"),
        )
        return ToolOutput(content=(mcp_types.EmbeddedResource(resource=blob),))
    data = to_jsonable(value, tool_id=tool_id)
    structured = data if isinstance(data, dict) else None
    return ToolOutput(content=(mcp_types.TextContent(text=dump_json(data)),), structured=structured)


def validation_error_text(error: pydantic.ValidationError) -> list[str]:
    """pydantic's errors as `path: message` lines."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in error.errors()]
