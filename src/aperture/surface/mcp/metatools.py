"""The meta-tools an agent sees: their argument models and the descriptions written for a model.

Names and argument names follow the reference server (metatools-mcp), so its users can switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import mcp_types
from pydantic import BaseModel, ConfigDict, Field

from aperture.discovery import MAX_INTENT, MAX_QUERY
from aperture.model import ArgumentValidator
from aperture.model._schema import tidy_schema


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchToolsArgs(_Arguments):
    query: str = Field(
        description=f"What you want to do, in a few words (at most {MAX_QUERY} characters), e.g. 'convert "
        "kilometres to miles'."
    )
    limit: int = Field(10, ge=1, le=100, description="Maximum results to return (1-100).")
    cursor: str | None = Field(None, description="nextCursor from a previous identical search, for the next page.")
    namespace: str | None = Field(None, description="Only tools of this namespace (see list_namespaces).")
    tags: list[str] | None = Field(None, description="Only tools that have every one of these tags.")
    # Length limits (query, intent, namespace, tags) are checked by the gateway, whose error says what to do
    # (a schema error would quote the whole over-long text and cut off the reason).
    intent: str = Field(
        "",
        description=f"Optional: one sentence (at most {MAX_INTENT} characters) on what you are trying to "
        "achieve overall; it helps the ranking.",
    )


class ListToolsArgs(_Arguments):
    limit: int = Field(50, ge=1, le=100, description="Maximum tools to return (1-100).")
    cursor: str | None = Field(None, description="nextCursor from the previous page.")
    namespace: str | None = Field(None, description="Only tools of this namespace.")
    backend_kind: str | None = Field(None, description="Only tools of this backend kind, e.g. 'python'.")


class ListNamespacesArgs(_Arguments):
    limit: int = Field(50, ge=1, le=100, description="Maximum namespaces to return (1-100).")
    cursor: str | None = Field(None, description="nextCursor from the previous page.")


class DescribeToolArgs(_Arguments):
    tool_id: str = Field(description="The tool's id, 'namespace:name', as search_tools returned it.")
    detail_level: Literal["summary", "schema", "full"] = Field(
        "schema", description="summary: what it does; schema: plus input/output JSON Schema; full: plus examples."
    )
    examples_max: int | None = Field(None, ge=0, le=5, description="At most this many examples at 'full' (0-5).")


class ListToolExamplesArgs(_Arguments):
    tool_id: str = Field(description="The tool's id, 'namespace:name'.")
    max: int = Field(3, ge=1, le=5, description="Maximum examples to return (1-5).")


class RunToolArgs(_Arguments):
    tool_id: str = Field(description="The tool's id, 'namespace:name', as search_tools returned it.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="The tool's arguments: a JSON object matching its input schema (a JSON string works too).",
    )


@dataclass(frozen=True, slots=True)
class MetaTool:
    """One meta-tool: its MCP listing and the validator for its arguments."""

    name: str
    description: str
    arguments: type[_Arguments]
    read_only: bool = True

    @property
    def input_schema(self) -> dict[str, Any]:
        return tidy_schema(self.arguments.model_json_schema())

    def listing(self) -> mcp_types.Tool:
        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            annotations=mcp_types.ToolAnnotations(read_only_hint=self.read_only, open_world_hint=not self.read_only),
        )

    def validator(self) -> ArgumentValidator:
        return ArgumentValidator(self.input_schema, tool_id=self.name)


META_TOOLS: tuple[MetaTool, ...] = (
    MetaTool(
        "search_tools",
        "Find tools for a task. Returns the best-matching tools, best first, as {id, name, namespace, "
        "short_description, tags, score} without schemas, and a confidence: strong (the first tool fits), "
        "weak (check its description), none (no tool fits: stop searching and tell the user no available "
        "tool can do this). Start here; then call describe_tool on the id you pick, then run_tool.",
        SearchToolsArgs,
    ),
    MetaTool(
        "describe_tool",
        "Show one tool's documentation. detail_level 'schema' (the default) gives the input JSON Schema "
        "you need for run_tool; 'full' adds examples and annotations; 'summary' is the shortest.",
        DescribeToolArgs,
    ),
    MetaTool(
        "run_tool",
        "Run a tool by id with arguments matching its input schema (see describe_tool). Returns the tool's "
        "own result. On invalid arguments the error lists every problem and the valid parameters: fix and retry.",
        RunToolArgs,
        read_only=False,
    ),
    MetaTool(
        "list_tool_examples",
        "Show worked example calls of a tool (arguments and, where known, results).",
        ListToolExamplesArgs,
    ),
    MetaTool(
        "list_tools",
        "Browse tools in catalog order, optionally of one namespace or backend kind. Prefer search_tools "
        "when you know what you need.",
        ListToolsArgs,
    ),
    MetaTool(
        "list_namespaces",
        "List the namespaces (tool sources) with their tool counts and whether their backend is healthy.",
        ListNamespacesArgs,
    ),
)

META_TOOLS_BY_NAME: Mapping[str, MetaTool] = {tool.name: tool for tool in META_TOOLS}
