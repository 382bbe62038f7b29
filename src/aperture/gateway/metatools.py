"""The meta-tools an agent sees, each described once: name, the description written for a model, the
argument model, and the handler. Every surface serves them from here (`call_meta_tool` validates the
arguments once and runs the handler), so a new meta-tool is one entry in `META_TOOLS`.

Names and argument names follow the reference server (metatools-mcp), so its users can switch.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import anyio
import mcp_types
from pydantic import BaseModel, ConfigDict, Field

from aperture.compose import ChainStep, Recipe, SkillBackend
from aperture.compose.skills import LIMITS_KEY, Skill
from aperture.discovery import MAX_INTENT, MAX_QUERY
from aperture.execution import CallContext, RunResult
from aperture.model import (
    ApertureError,
    ArgumentValidator,
    DetailLevel,
    InvalidRequestError,
    UnknownToolError,
    describe,
)
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
    backend_name: str | None = Field(None, description="The reference server's word for namespace.")


class ListNamespacesArgs(_Arguments):
    limit: int = Field(50, ge=1, le=100, description="Page size.")
    cursor: str | None = Field(None, description="nextCursor of the previous page.")


class DescribeToolArgs(_Arguments):
    tool_id: str = Field(description="Tool id from search_tools.")
    detail_level: Literal["summary", "schema", "full"] = Field(
        "schema", description="summary: what it does; schema: + JSON Schemas; full: + examples."
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
    # The reference server's flags (unlisted: a model has no use for them; programs ported from it send them).
    stream: bool = Field(False, description="Progress is sent whenever the request carries a progressToken.")
    include_tool: bool = Field(False, description="Add the tool's summary.")
    include_backend: bool = Field(False, description="Name the tool's backend.")
    include_mcp_result: bool = Field(False, description="Add the result as MCP content.")
    backend_override: dict[str, Any] | None = Field(None, description="Not supported: a tool id has one backend.")


class ChainStepArgs(_Arguments):
    tool_id: str = Field(description="Tool id.")
    args: dict[str, Any] = Field(default_factory=dict, description="Its arguments.")
    use_previous: bool = Field(
        False,
        description="Pass the previous result: as args.previous if the tool takes it; in args as "
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


class ListSkillsArgs(_Arguments):
    pass


class DescribeSkillArgs(_Arguments):
    skill_id: str = Field(description="The skill's id, 'skills:<name>', as list_skills gives it.")


class PlanSkillArgs(_Arguments):
    skill_id: str | None = Field(None, description="The skill's id (or give skill).")
    skill: dict[str, Any] | None = Field(
        None, description="An inline recipe: {name, inputs?, steps: [{id, tool_id, args, when?, foreach?}], output?}."
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="The skill's inputs, matching its schema.")


class RunSkillArgs(PlanSkillArgs):
    max_steps: int | None = Field(None, ge=1, description="Refuse a skill with more steps.")
    max_tool_calls: int | None = Field(None, ge=1, description="Stop past this many tool calls.")
    timeout_ms: int | None = Field(None, ge=1, description="Stop the run after this long.")


class ExecuteCodeArgs(_Arguments):
    language: Literal["python"] = Field("python", description="python.")
    code: str = Field(
        max_length=100_000,
        description="Python. tools.search(query, limit), tools.describe(tool_id), tools.run(tool_id, **args) call "
        "tools; the last expression (or result(x)) is the value.",
    )
    timeout_ms: int | None = Field(None, ge=1, le=60_000, description="Wall-clock limit (1-60000).")
    max_tool_calls: int | None = Field(None, ge=1, le=1000, description="Cap on tool calls (1-1000).")


class ListToolsetsArgs(_Arguments):
    pass


class DescribeToolsetArgs(_Arguments):
    toolset_id: str = Field(description="The toolset's id from list_toolsets, e.g. 'toolset:readonly'.")


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
    unlisted: frozenset[str] = frozenset()
    """Arguments of the reference server's that a model has no use for (a program ported from it still sends
    them): accepted with their meaning, but left out of the listing and of an invalid call's valid parameters."""

    def offered_by(self, gateway: Gateway) -> bool:
        return self.offered is None or self.offered(gateway)

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        return _inline_definitions(tidy_schema(self.arguments.model_json_schema()))

    @cached_property
    def listing_schema(self) -> dict[str, Any]:
        """The input schema as listed: without what costs an agent tokens and tells it nothing (see `_lean`),
        nor the `unlisted` arguments."""
        lean = _lean(self.input_schema)
        if self.unlisted:
            lean["properties"] = {k: v for k, v in lean["properties"].items() if k not in self.unlisted}
        return lean

    @cached_property
    def validator(self) -> ArgumentValidator:
        return ArgumentValidator(self.input_schema, tool_id=self.name, unlisted=self.unlisted)

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
    null`), no `additionalProperties` (nor in the objects of a list), no `default: false` of a flag nor `default:
    ""` of a text. Validation keeps the whole schema, so an explicit null is still accepted and an unknown
    argument still refused, with the list of valid ones."""
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
        if (spec.get("default") is False and spec.get("type") == "boolean") or spec.get("default") == "":
            spec = {k: v for k, v in spec.items() if k != "default"}  # an optional flag left out is off; "" is none
        if isinstance(spec.get("items"), dict) and "properties" in spec["items"]:  # a list of objects (chain steps)
            spec = {**spec, "items": _lean(spec["items"])}
        properties[name] = spec
    lean = {k: v for k, v in schema.items() if k != "additionalProperties"}
    if properties:
        lean["properties"] = properties
    return lean


async def _search_tools(gateway: Gateway, call: CallContext, args: SearchToolsArgs) -> Answer:
    if gateway.index.warming is not None:  # the semantic index is being built: wait for it a bounded time
        await anyio.to_thread.run_sync(gateway.index.wait_ready, gateway.config.search.warm_wait)
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
    if args.backend_override is not None:
        raise InvalidRequestError(
            "backend_override is not supported: Aperture serves each tool id from the one backend of its "
            "namespace. Leave it out; to use another backend's tool, call that tool by its own id.",
            op="run_tool",
        )
    result = await gateway.run(args.tool_id, args.args, call)
    if result.error is not None or not (args.include_tool or args.include_backend or args.include_mcp_result):
        return result
    try:  # the tool as describe_tool shows it to this caller (its toolset's id for it)
        tool = gateway.get_tool(args.tool_id, "run_tool")
    except ApertureError:
        return result
    extra: dict[str, Any] = {}
    if args.include_tool:
        extra["tool"] = describe(tool, DetailLevel.SUMMARY)
    if args.include_backend:
        extra["backend"] = {"kind": tool.backend_kind, "name": tool.namespace}
    if args.include_mcp_result:
        extra["mcp_result"] = mcp_types.CallToolResult(
            content=list(result.content), structured_content=result.structured, is_error=result.is_error
        ).model_dump(by_alias=True, mode="json", exclude_none=True)
    return replace(result, extra=extra) if extra else result


async def _run_chain(gateway: Gateway, call: CallContext, args: RunChainArgs) -> Answer:
    steps = [ChainStep(tool_id=s.tool_id, args=s.args, use_previous=s.use_previous) for s in args.steps]
    return await gateway.run_chain(
        steps, call, include_backends=args.include_backends, include_tools=args.include_tools
    )


async def _list_tool_examples(gateway: Gateway, call: CallContext, args: ListToolExamplesArgs) -> Answer:
    return gateway.examples(args.tool_id, args.max)


async def _list_tools(gateway: Gateway, call: CallContext, args: ListToolsArgs) -> Answer:
    return gateway.list_tools(
        limit=args.limit,
        cursor=args.cursor,
        namespace=args.namespace or args.backend_name,
        backend_kind=args.backend_kind,
    )


async def _list_namespaces(gateway: Gateway, call: CallContext, args: ListNamespacesArgs) -> Answer:
    return await gateway.list_namespaces(limit=args.limit, cursor=args.cursor)


def _skill_backend(gateway: Gateway) -> SkillBackend:
    if gateway.skills is None:
        raise InvalidRequestError("This gateway serves no skills (the configuration has no skills: section).")
    return gateway.skills


def _has_skills(gateway: Gateway) -> bool:
    return gateway.skills is not None and len(gateway.skills.skills) > 0


def _visible_skill(gateway: Gateway, call: CallContext, skill_id: str, op: str) -> Skill:
    """The skill `skill_id` if the caller may use it; else the error of an unknown one (naming only skills the
    caller may use, and, for one it may use that does not load, why)."""
    skills = _skill_backend(gateway)
    access = gateway.access(call)
    skill = skills.lookup(skill_id)
    if skill is not None and access.may_see_tool(skills.tool_id(skill)):
        return skill
    name = skill_id.split(":", 1)[1] if skill_id.startswith(f"{skills.name}:") else skill_id
    visible = [skills.tool_id(s) for s in skills.skills.by_name.values() if access.may_see_tool(skills.tool_id(s))]
    error = UnknownToolError(skill_id, difflib.get_close_matches(f"{skills.name}:{name}", visible, n=3, cutoff=0.6))
    problems = skills.why_missing(name) if access.may_see_tool(f"{skills.name}:{name}") else []
    if problems:
        reasons = "; ".join(f"line {p.line}: {p.reason}" if p.line else p.reason for p in problems[:5])
        error.message = f"Skill '{name}' is not available: its definition has problems ({reasons})."
    else:
        hint = f" Did you mean: {', '.join(error.details['closest'])}?" if error.details["closest"] else ""
        error.message = f"No skill {skill_id!r}.{hint} list_skills shows the skills."
    error.args = (error.message,)
    error.op = op
    raise error


def _recipe_of(gateway: Gateway, call: CallContext, args: PlanSkillArgs, op: str) -> tuple[str, Skill]:
    """`(tool id or inline name, skill)` for `skill_id` or an inline `skill`."""
    skills = _skill_backend(gateway)
    if (args.skill_id is None) == (args.skill is None):
        raise InvalidRequestError(
            "Give either skill_id (a skill list_skills shows) or skill (an inline recipe).", op=op
        )
    if args.skill_id is not None:
        skill = _visible_skill(gateway, call, args.skill_id, op)
        return skills.tool_id(skill), skill
    try:
        recipe = skills.compile_inline(args.skill or {})
    except InvalidRequestError as error:
        error.op = op
        raise
    return f"inline:{recipe.name}", recipe


async def _list_skills(gateway: Gateway, call: CallContext, args: ListSkillsArgs) -> Answer:
    _skill_backend(gateway)  # (an error without skills)
    return {"skills": gateway.visible_skills(call)}


async def _describe_skill(gateway: Gateway, call: CallContext, args: DescribeSkillArgs) -> Answer:
    skill = _visible_skill(gateway, call, args.skill_id, "describe_skill")
    return {"skill": {"id": _skill_backend(gateway).tool_id(skill), **skill.to_dict()}}


async def _plan_skill(gateway: Gateway, call: CallContext, args: PlanSkillArgs) -> Answer:
    skills = _skill_backend(gateway)
    shown, skill = _recipe_of(gateway, call, args, "plan_skill")
    if not isinstance(skill, Recipe):
        note = "An instruction skill has no steps: run_tool (or run_skill) on it returns its instructions."
        return {"plan": {"id": shown, "name": skill.name, "steps": []}, "note": note}
    inputs = skills.validate_inputs(skill, args.inputs)
    return {"plan": {"id": shown, **skills.plan(skill, inputs, call, skills.limits)}}


async def _run_skill(gateway: Gateway, call: CallContext, args: RunSkillArgs) -> Answer:
    skills = _skill_backend(gateway)
    shown, skill = _recipe_of(gateway, call, args, "run_skill")
    timeout = args.timeout_ms / 1000 if args.timeout_ms is not None else None
    limits = skills.limits.narrowed(max_steps=args.max_steps, max_tool_calls=args.max_tool_calls, timeout=timeout)
    if args.skill_id is not None:  # the same call as run_tool on the skill's id, with these limits
        return await gateway.run(shown, args.inputs, replace(call, meta={**call.meta, LIMITS_KEY: limits}))
    assert isinstance(skill, Recipe)
    inputs = skills.validate_inputs(skill, args.inputs)
    with gateway.ops.audited("run_skill", shown):
        output = await skills.run_inline(skill, inputs, call, limits)
    duration = float(output.structured.get("durationMs", 0.0)) if isinstance(output.structured, dict) else 0.0
    return RunResult(
        tool_id=shown,
        content=output.content,
        structured=output.structured,
        is_error=output.is_error,
        duration_ms=duration,
    )


async def _list_toolsets(gateway: Gateway, call: CallContext, args: ListToolsetsArgs) -> Answer:
    return gateway.list_toolsets()


async def _describe_toolset(gateway: Gateway, call: CallContext, args: DescribeToolsetArgs) -> Answer:
    return gateway.describe_toolset(args.toolset_id)


async def _execute_code(gateway: Gateway, call: CallContext, args: ExecuteCodeArgs) -> Answer:
    return await gateway.execute_code(args.code, call, timeout_ms=args.timeout_ms, max_tool_calls=args.max_tool_calls)


def _has_toolsets(gateway: Gateway) -> bool:
    return bool(gateway.toolsets)


META_TOOLS: tuple[MetaTool[Any], ...] = (
    MetaTool(
        "search_tools",
        "Find tools for a task, best first, with a confidence: strong (the first fits), weak (check it), none "
        "(nothing fits: stop searching, tell the user). Then describe_tool, run_tool.",
        SearchToolsArgs,
        _search_tools,
    ),
    MetaTool(
        "describe_tool",
        "A tool's docs; at detail_level schema, the input schema run_tool needs.",
        DescribeToolArgs,
        _describe_tool,
        unlisted=frozenset({"examples_max"}),  # list_tool_examples' max says it where a tool has examples
    ),
    MetaTool(
        "run_tool",
        "Run a tool with args matching its input schema. An invalid call's error lists each problem and the "
        "valid parameters.",
        RunToolArgs,
        _run_tool,
        read_only=False,
        unlisted=frozenset({"stream", "include_tool", "include_backend", "include_mcp_result", "backend_override"}),
    ),
    MetaTool(
        "run_chain",
        "Run tools in order in one call; stops at the first failure.",
        RunChainArgs,
        _run_chain,
        read_only=False,
        unlisted=frozenset({"include_backends", "include_tools"}),
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
        "Browse tools page by page (search_tools finds one faster).",
        ListToolsArgs,
        _list_tools,
        unlisted=frozenset({"backend_name"}),
    ),
    MetaTool(
        "list_namespaces",
        "Namespaces (tool sources): tool counts and health.",
        ListNamespacesArgs,
        _list_namespaces,
    ),
    MetaTool(
        "list_skills",
        "List skills: packaged multi-step procedures (recipes) and instructions, each also a tool skills:<name>.",
        ListSkillsArgs,
        _list_skills,
        offered=_has_skills,
    ),
    MetaTool(
        "describe_skill",
        "Show a skill: a recipe's inputs schema and steps, or an instruction skill's text and files.",
        DescribeSkillArgs,
        _describe_skill,
        offered=_has_skills,
    ),
    MetaTool(
        "plan_skill",
        "Show the steps a skill would run with these inputs, without running them.",
        PlanSkillArgs,
        _plan_skill,
        offered=_has_skills,
    ),
    MetaTool(
        "run_skill",
        "Run a skill as one call: each step's outcome and timing, the output, or the failing step and why.",
        RunSkillArgs,
        _run_skill,
        read_only=False,
        offered=_has_skills,
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
    MetaTool(
        "execute_code",
        "Run a short Python program that calls tools (loops, filters, joins) in a sandbox; returns its value, "
        "output and the calls it made.",
        ExecuteCodeArgs,
        _execute_code,
        read_only=False,
        offered=lambda gateway: gateway.may_execute_code(),
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
