"""The meta-tools an agent sees, each described once: name, the description written for a model, the
argument model, and the handler. Every surface serves them from here (`call_meta_tool` validates the
arguments once and runs the handler), so a new meta-tool is one entry in `META_TOOLS`.

Names and argument names follow the reference server (metatools-mcp), so its users can switch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aperture.compose import ChainStep
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
    limit: int = Field(50, ge=1, le=100, description="Page size.")
    cursor: str | None = Field(None, description="nextCursor of the previous page.")
    namespace: str | None = Field(None, description="Only this namespace.")
    backend_kind: str | None = Field(None, description="Only this backend kind, e.g. mcp.")


class ListNamespacesArgs(_Arguments):
    limit: int = Field(50, ge=1, le=100, description="Page size.")
    cursor: str | None = Field(None, description="nextCursor of the previous page.")


class DescribeToolArgs(_Arguments):
    tool_id: str = Field(description="Tool id from search_tools.")
    detail_level: Literal["summary", "schema", "full"] = Field(
        "schema", description="summary: what it does; schema: plus its JSON Schemas; full: plus examples."
    )
    examples_max: int | None = Field(None, ge=0, le=5, description="Examples at full.")


class ListToolExamplesArgs(_Arguments):
    tool_id: str = Field(description="Tool id.")
    max: int = Field(3, ge=1, le=5, description="How many.")


class RunToolArgs(_Arguments):
    tool_id: str = Field(description="The tool's id, 'namespace:name', as search_tools returned it.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="The tool's arguments: a JSON object matching its input schema (a JSON string works too).",
    )


class ChainStepArgs(_Arguments):
    tool_id: str = Field(description="Tool id.")
    args: dict[str, Any] = Field(default_factory=dict, description="Its arguments.")
    use_previous: bool = Field(
        False,
        description="Give it the previous result: as args.previous if it takes that, and in args as "
        "'{{ previous.<path> }}'.",
    )


class RunChainArgs(_Arguments):
    steps: list[ChainStepArgs] = Field(description="Calls to run in order.")
    include_backends: bool = Field(True, description="Name each step's backend.")
    include_tools: bool = Field(False, description="Add each step's tool summary.")


class Report(Protocol):
    """An answer with a shape of its own that can still be a failure (a chain stopped at a step): surfaces send
    `to_dict()` as the result and mark it as an error when `is_error`."""

    @property
    def is_error(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


Answer = dict[str, Any] | RunResult | Report
"""What a meta-tool answers: a JSON object, (run_tool) the tool's own result, which surfaces pass on, or a
`Report` (run_chain)."""

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
        return _inline_definitions(tidy_schema(self.arguments.model_json_schema()))

    @cached_property
    def listing_schema(self) -> dict[str, Any]:
        """The input schema as listed: without what costs an agent tokens and tells it nothing (see `_lean`)."""
        return _lean(self.input_schema)

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


def _inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each `{"$ref": "#/$defs/X"}` replaced by X itself (nested argument models are not
    recursive): the same schema in fewer tokens."""
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _lean(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` for a listing: an optional argument is its plain type (not `anyOf [type, null]` with `default:
    null`), no `additionalProperties` (nor in the objects of a list), no `default: false` of a flag. Validation
    keeps the whole schema, so an explicit null is still accepted and an unknown argument still refused, with
    the list of valid ones."""
    properties = {}
    for name, spec in schema.get("properties", {}).items():
        branches = spec.get("anyOf")
        if (
            isinstance(branches, list)
            and len(branches) == 2
            and {"type": "null"} in branches
            and spec.get("default", 0) is None
        ):
            (kept,) = [b for b in branches if b != {"type": "null"}]
            spec = {**kept, **{k: v for k, v in spec.items() if k not in ("anyOf", "default")}}
        if spec.get("additionalProperties") is True:  # JSON Schema's default (a free-form object)
            spec = {k: v for k, v in spec.items() if k != "additionalProperties"}
        if spec.get("type") == "boolean" and spec.get("default") is False:  # an optional flag left out is off
            spec = {k: v for k, v in spec.items() if k != "default"}
        if isinstance(spec.get("items"), dict) and "properties" in spec["items"]:  # a list of objects (chain steps)
            spec = {**spec, "items": _lean(spec["items"])}
        properties[name] = spec
    lean = {k: v for k, v in schema.items() if k != "additionalProperties"}
    if properties:
        lean["properties"] = properties
    return lean


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


async def _run_chain(gateway: Gateway, call: CallContext, args: RunChainArgs) -> Answer:
    steps = [ChainStep(tool_id=s.tool_id, args=s.args, use_previous=s.use_previous) for s in args.steps]
    return await gateway.run_chain(
        steps, call, include_backends=args.include_backends, include_tools=args.include_tools
    )


async def _list_tool_examples(gateway: Gateway, call: CallContext, args: ListToolExamplesArgs) -> Answer:
    return gateway.examples(args.tool_id, args.max)


async def _list_tools(gateway: Gateway, call: CallContext, args: ListToolsArgs) -> Answer:
    return gateway.list_tools(
        limit=args.limit, cursor=args.cursor, namespace=args.namespace, backend_kind=args.backend_kind
    )


async def _list_namespaces(gateway: Gateway, call: CallContext, args: ListNamespacesArgs) -> Answer:
    return await gateway.list_namespaces(limit=args.limit, cursor=args.cursor)


META_TOOLS: tuple[MetaTool[Any], ...] = (
    MetaTool(
        "search_tools",
        "Find tools for a task: best matches first, without schemas, and a confidence: strong (the first "
        "fits), weak (check it), none (no tool fits: stop searching and tell the user). Then describe_tool, "
        "then run_tool.",
        SearchToolsArgs,
        _search_tools,
    ),
    MetaTool(
        "describe_tool",
        "A tool's documentation; at detail_level schema (the default), the input schema run_tool needs.",
        DescribeToolArgs,
        _describe_tool,
    ),
    MetaTool(
        "run_tool",
        "Run a tool with arguments matching its input schema; returns its result. An invalid call's error "
        "lists every problem and the valid parameters: fix and retry.",
        RunToolArgs,
        _run_tool,
        read_only=False,
    ),
    MetaTool(
        "run_chain",
        "Run tools in order in one call; stops at the first failure.",
        RunChainArgs,
        _run_chain,
        read_only=False,
    ),
    MetaTool(
        "list_tool_examples",
        "Worked example calls of a tool.",
        ListToolExamplesArgs,
        _list_tool_examples,
        offered=lambda gateway: gateway.has_examples,
    ),
    MetaTool(
        "list_tools",
        "Browse tools in catalog order (to find one, search_tools is better).",
        ListToolsArgs,
        _list_tools,
    ),
    MetaTool(
        "list_namespaces",
        "Namespaces (tool sources) with tool counts and backend health.",
        ListNamespacesArgs,
        _list_namespaces,
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
