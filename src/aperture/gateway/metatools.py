"""The meta-tools an agent sees, each described once: name, the description written for a model, the
argument model, and the handler. Every surface serves them from here (`call_meta_tool` validates the
arguments once and runs the handler), so a new meta-tool is one entry in `META_TOOLS`.

Names and argument names follow the reference server (metatools-mcp), so its users can switch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aperture.discovery import MAX_INTENT, MAX_QUERY
from aperture.execution import CallContext, RunResult
from aperture.model import ArgumentValidator
from aperture.model._schema import tidy_schema

if TYPE_CHECKING:
    from aperture.gateway.core import Gateway


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


class ListToolsetsArgs(_Arguments):
    pass


class DescribeToolsetArgs(_Arguments):
    toolset_id: str = Field(description="The toolset's id from list_toolsets, e.g. 'toolset:readonly'.")


Answer = dict[str, Any] | RunResult
"""What a meta-tool answers: a JSON object, or (run_tool) the tool's own result, which surfaces pass on."""

A = TypeVar("A", bound=_Arguments)


@dataclass(frozen=True)
class MetaTool(Generic[A]):
    """One meta-tool: what a model reads about it, what it takes, and what it does."""

    name: str
    description: str
    arguments: type[A]
    handler: Callable[[Gateway, CallContext, A], Awaitable[Answer]] = field(repr=False)
    read_only: bool = True
    offered: Callable[[Gateway], bool] | None = field(default=None, repr=False)
    """Whether the gateway offers it now (None: always). A meta-tool that can do nothing here (skill tools
    without skills) is neither listed nor callable, so it costs the agent no context."""

    def offered_by(self, gateway: Gateway) -> bool:
        return self.offered is None or self.offered(gateway)

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        return tidy_schema(self.arguments.model_json_schema())

    @cached_property
    def validator(self) -> ArgumentValidator:
        return ArgumentValidator(self.input_schema, tool_id=self.name)

    async def call(self, gateway: Gateway, call: CallContext, arguments: Mapping[str, Any] | None) -> Answer:
        """Validate `arguments` (errors list every problem, as for any tool) and run the handler.

        Raises:
            ApertureError: invalid arguments, or whatever the handler raises.
        """
        checked = self.validator.validate(dict(arguments or {}))
        return await self.handler(gateway, call, self.arguments.model_validate(checked))


async def _search_tools(gateway: Gateway, call: CallContext, args: SearchToolsArgs) -> Answer:
    return gateway.search(
        args.query,
        limit=args.limit,
        cursor=args.cursor,
        namespace=args.namespace,
        tags=args.tags or (),
        intent=args.intent or None,
    )


async def _describe_tool(gateway: Gateway, call: CallContext, args: DescribeToolArgs) -> Answer:
    return gateway.describe(args.tool_id, args.detail_level, args.examples_max)


async def _run_tool(gateway: Gateway, call: CallContext, args: RunToolArgs) -> Answer:
    return await gateway.run(args.tool_id, args.args, call)


async def _list_tool_examples(gateway: Gateway, call: CallContext, args: ListToolExamplesArgs) -> Answer:
    return gateway.examples(args.tool_id, args.max)


async def _list_tools(gateway: Gateway, call: CallContext, args: ListToolsArgs) -> Answer:
    return gateway.list_tools(
        limit=args.limit, cursor=args.cursor, namespace=args.namespace, backend_kind=args.backend_kind
    )


async def _list_namespaces(gateway: Gateway, call: CallContext, args: ListNamespacesArgs) -> Answer:
    return await gateway.list_namespaces(limit=args.limit, cursor=args.cursor)


async def _list_toolsets(gateway: Gateway, call: CallContext, args: ListToolsetsArgs) -> Answer:
    return gateway.list_toolsets()


async def _describe_toolset(gateway: Gateway, call: CallContext, args: DescribeToolsetArgs) -> Answer:
    return gateway.describe_toolset(args.toolset_id)


def _has_toolsets(gateway: Gateway) -> bool:
    return bool(gateway.toolsets)


META_TOOLS: tuple[MetaTool[Any], ...] = (
    MetaTool(
        "search_tools",
        "Find tools for a task. Returns the best-matching tools, best first, as {id, name, namespace, "
        "short_description, tags, score} without schemas, and a confidence: strong (the first tool fits), "
        "weak (check its description), none (no tool fits: stop searching and tell the user no available "
        "tool can do this). Start here; then call describe_tool on the id you pick, then run_tool.",
        SearchToolsArgs,
        _search_tools,
    ),
    MetaTool(
        "describe_tool",
        "Show one tool's documentation. detail_level 'schema' (the default) gives the input JSON Schema "
        "you need for run_tool; 'full' adds examples and annotations; 'summary' is the shortest.",
        DescribeToolArgs,
        _describe_tool,
    ),
    MetaTool(
        "run_tool",
        "Run a tool by id with arguments matching its input schema (see describe_tool). Returns the tool's "
        "own result. On invalid arguments the error lists every problem and the valid parameters: fix and retry.",
        RunToolArgs,
        _run_tool,
        read_only=False,
    ),
    MetaTool(
        "list_tool_examples",
        "Show worked example calls of a tool (arguments and, where known, results).",
        ListToolExamplesArgs,
        _list_tool_examples,
    ),
    MetaTool(
        "list_tools",
        "Browse tools in catalog order, optionally of one namespace or backend kind. Prefer search_tools "
        "when you know what you need.",
        ListToolsArgs,
        _list_tools,
    ),
    MetaTool(
        "list_namespaces",
        "List the namespaces (tool sources) with their tool counts and whether their backend is healthy.",
        ListNamespacesArgs,
        _list_namespaces,
    ),
    MetaTool(
        "list_toolsets",
        "List the toolsets (named views of the tools) you may use, with their tool counts.",
        ListToolsetsArgs,
        _list_toolsets,
        offered=_has_toolsets,
    ),
    MetaTool(
        "describe_toolset",
        "Show one toolset and the tools in it.",
        DescribeToolsetArgs,
        _describe_toolset,
        offered=_has_toolsets,
    ),
)

META_TOOLS_BY_NAME: Mapping[str, MetaTool[Any]] = {tool.name: tool for tool in META_TOOLS}


def offered_meta_tools(gateway: Gateway) -> list[MetaTool[Any]]:
    """The meta-tools `gateway` offers now, in listing order."""
    return [tool for tool in META_TOOLS if tool.offered_by(gateway)]


def offered_meta_tool(gateway: Gateway, name: str) -> MetaTool[Any] | None:
    """The meta-tool called `name` if `gateway` offers it now."""
    tool = META_TOOLS_BY_NAME.get(name)
    return tool if tool is not None and tool.offered_by(gateway) else None
