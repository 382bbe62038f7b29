"""What an agent sees of a tool: a summary in search results, a doc at a chosen detail level."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aperture.model.tool import Tool

DEFAULT_EXAMPLES_MAX = 3


class DetailLevel(StrEnum):
    """How much `describe_tool` tells: each level adds to the one before."""

    SUMMARY = "summary"
    SCHEMA = "schema"
    FULL = "full"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSummary:
    """A search hit: enough to choose a tool, no schemas (tens of tokens, not thousands).

    `available` is False, with the reason in `unavailable_reason`, when the tool's backend is down; both
    appear in `to_dict()` only then, so the common case costs no tokens.
    """

    id: str
    name: str
    namespace: str
    short_description: str
    tags: tuple[str, ...]
    score: float
    available: bool = True
    unavailable_reason: str = ""

    @classmethod
    def of(cls, tool: Tool, score: float) -> ToolSummary:
        return cls(
            id=tool.key,
            name=tool.name,
            namespace=tool.namespace,
            short_description=tool.short_description,
            tags=tool.tags,
            score=round(float(score), 4),
        )

    def to_dict(self) -> dict[str, Any]:
        # `id` is `namespace:name`: repeating the two costs an agent a dozen tokens a hit and tells it nothing.
        out: dict[str, Any] = {"id": self.id, "short_description": self.short_description}
        if self.tags:  # as the reference server, no empty list: tokens that say nothing
            out["tags"] = list(self.tags)
        out["score"] = round(self.score, 2)
        if not self.available:
            out["available"] = False
            out["unavailable_reason"] = self.unavailable_reason
        return out


def describe(tool: Tool, level: DetailLevel, *, examples_max: int = DEFAULT_EXAMPLES_MAX) -> dict[str, Any]:
    """The tool's documentation at `level`, as a JSON object.

    `summary` gives id, title, description and tags; `schema` adds the input and output schemas and a
    one-line-per-parameter digest; `full` adds annotations, examples, where the tool comes from and, where the
    tool has them, its instructions and the URIs of its resources.
    """
    doc: dict[str, Any] = {"id": tool.key}
    # What a tool does not have (a title, tags, an output schema) is left out, not sent as null or [].
    if title := tool.title or tool.annotations.title:
        doc["title"] = title
    doc["description"] = tool.description
    if tool.tags:
        doc["tags"] = list(tool.tags)
    if tool.version:
        doc["version"] = tool.version
    if level is DetailLevel.SUMMARY:
        doc["parameters"] = [p.name for p in tool.parameters()]
        return doc
    doc["input_schema"] = dict(tool.input_schema)
    if tool.output_schema is not None:
        doc["output_schema"] = dict(tool.output_schema)
    if level is DetailLevel.SCHEMA:
        return doc
    doc["annotations"] = tool.annotations.to_dict()
    doc["examples"] = [e.to_dict() for e in tool.examples[: max(0, examples_max)]]
    doc["backend_kind"] = tool.backend_kind
    doc["usage"] = f"run_tool(tool_id={tool.key!r}, args={{...}}) with args matching input_schema"
    if tool.instructions:
        doc["instructions"] = tool.instructions
    if tool.resources:
        doc["resources"] = list(tool.resources)
    return doc
