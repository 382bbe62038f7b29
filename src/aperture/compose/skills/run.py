"""Running and planning a recipe: each step a call of the gateway's own run function, as the caller.

A recipe runs as one tool call. Before any step runs, the whole recipe is checked for this caller: every step's
tool must exist and be one the caller may run (one it may not is answered exactly as a tool that does not exist,
so a skill never grants a tool, nor reveals one), and the limits must hold where the inputs already decide them.
Then the steps run in order; the first failure stops the run and is named with its step.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio
import mcp_types

from aperture.compose.skills.recipe import Recipe, Step
from aperture.compose.templates import ExpressionError, as_text, truthy
from aperture.execution import CallContext, CatalogSnapshot, RunResult, ToolOutput
from aperture.model import ApertureError, ErrorCode, InvalidRequestError, ToolId, ToolTimeoutError

RunTool = Callable[[str, Any, CallContext], Awaitable[RunResult]]
"""How a step runs: the gateway's `run(tool_id, args, ctx)`, every operations rule applied; never raises."""

LIMITS_KEY = "aperture.skill_limits"
"""Where `run_skill` puts narrower `Limits` for one run, in `CallContext.meta` (steps do not inherit them)."""
STACK_KEY = "aperture.skill_stack"
"""The skills running around a call, outermost first, in `CallContext.meta`: a skill met twice is a loop."""
MAX_DEPTH = 8
"""Skills nested inside each other at most (a skill step calling a skill calling ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SkillHost:
    """What running a skill needs from the gateway, which the compose layer does not import."""

    run: RunTool
    catalog: Callable[[], CatalogSnapshot]
    may_see: Callable[[str, CallContext], bool]
    """Whether the caller of the context may see (and so run) a tool id: the gateway's one visibility check."""
    unknown: Callable[[str, CallContext], ApertureError]
    """The error for a tool the caller cannot see: an unknown tool, suggesting only ids it may see."""
    recipe_of: Callable[[str], Recipe | None] = lambda key: None
    """The recipe behind a tool id, when it is a recipe skill (so its steps are checked before the run too)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on one run; `run_skill` may narrow them, never widen them."""

    max_steps: int = 32
    max_tool_calls: int = 256
    max_foreach: int = 1000
    timeout: float = 120.0

    def narrowed(
        self, *, max_steps: int | None = None, max_tool_calls: int | None = None, timeout: float | None = None
    ) -> Limits:
        return replace(
            self,
            max_steps=min(self.max_steps, max_steps or self.max_steps),
            max_tool_calls=min(self.max_tool_calls, max_tool_calls or self.max_tool_calls),
            timeout=min(self.timeout, timeout or self.timeout),
        )


class _StepFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error


@dataclass
class _Run:
    """The state of one run: the data templates read, each step's outcome, the calls made."""

    recipe: Recipe
    ctx: CallContext
    host: SkillHost
    limits: Limits
    data: dict[str, Any]
    results: list[dict[str, Any]]
    calls: int = 0
    current: Step | None = None


async def run_recipe(
    recipe: Recipe, inputs: Mapping[str, Any], ctx: CallContext, host: SkillHost, limits: Limits, *, key: str
) -> ToolOutput:
    """Run `recipe` with (already validated) `inputs`, as the caller of `ctx`.

    Args:
        key: the skill's tool id (`skills:<name>`), or a name for an inline skill; kept on the stack of running
            skills that steps see, so a skill met again is refused as a loop.

    Returns:
        The result: `{skill, value?, results: [{step_id, tool_id, value? | error? | skipped?, durationMs}],
        error?, durationMs}` as structured content, the value (or the error) as text; an error result when a step
        failed.

    Raises:
        ApertureError: before any step runs: a step's tool the caller cannot run (as an unknown tool), a limit
            exceeded, a loop.
    """
    started = time.perf_counter()
    stack = _stack(ctx)
    if key in stack or len(stack) >= MAX_DEPTH:
        route = " → ".join((*stack, key))
        raise InvalidRequestError(
            f"Skill '{recipe.name}' is already running around this call ({route}): skills may call skills, "
            f"but not in a loop and at most {MAX_DEPTH} deep.",
            op="run_skill",
        )
    preflight(recipe, inputs, ctx, host, limits)
    step_ctx = replace(
        ctx,
        meta={**{k: v for k, v in ctx.meta.items() if k != LIMITS_KEY}, STACK_KEY: (*stack, key)},
        timeout=None,
        progress=None,
    )
    state = _Run(recipe, step_ctx, host, limits, {"inputs": dict(inputs), "steps": {}, "previous": None}, [])
    error: dict[str, Any] | None = None
    with anyio.move_on_after(limits.timeout) as scope:
        for step in recipe.steps:
            await ctx.report_progress(step.index, len(recipe.steps), f"step {step.id}")
            try:
                await _run_step(state, step)
            except _StepFailed as failed:
                error = failed.error
                break
    if scope.cancelled_caught and error is None:
        running = state.current
        where = (
            f" during step '{running.id}' ({running.index + 1} of {len(recipe.steps)}, {running.tool_id})"
            if running
            else ""
        )
        timeout = ToolTimeoutError(
            f"Skill '{recipe.name}' did not finish within {limits.timeout:g} s and was stopped{where}. Retry "
            "with inputs that ask for less work, or a larger timeout_ms (up to skills.timeout).",
            tool_id=running.tool_id if running else None,
        )
        error = _error(timeout.to_dict(), running)
        if running is not None:
            state.results.append({"step_id": running.id, "tool_id": running.tool_id, "error": error, "durationMs": 0.0})
    value: Any = None
    if error is None:
        try:
            value = recipe.output.render(state.data) if recipe.output is not None else state.data["previous"]
        except ExpressionError as exc:
            error = {"code": str(ErrorCode.VALIDATION_INPUT), "message": f"The output mapping failed: {exc}"}
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    structured: dict[str, Any] = {"skill": recipe.name}
    if error is None:
        structured["value"] = value
    structured["results"] = state.results
    if error is not None:
        structured["error"] = error
    structured["durationMs"] = elapsed
    text = as_text(value) if error is None else str(error["message"])
    return ToolOutput(content=(mcp_types.TextContent(text=text),), structured=structured, is_error=error is not None)


def preflight(recipe: Recipe, inputs: Mapping[str, Any], ctx: CallContext, host: SkillHost, limits: Limits) -> None:
    """Check what can be checked before a step runs, for this caller.

    Raises:
        ApertureError: a step's tool the caller cannot run (the unknown-tool error it would get for it, naming the
            step), more steps than `max_steps`, a `foreach` over the inputs longer than `max_foreach`, more calls
            than `max_tool_calls` counting those foreach lists.
    """
    if len(recipe.steps) > limits.max_steps:
        raise InvalidRequestError(
            f"Skill '{recipe.name}' has {len(recipe.steps)} steps; a run may take at most {limits.max_steps} "
            "(max_steps, up to skills.max_steps).",
            op="run_skill",
            details={"limit": "max_steps", "steps": len(recipe.steps), "max": limits.max_steps},
        )
    catalog = host.catalog()
    for step in recipe.steps:
        _check_tool(recipe, step, step, ctx, host, catalog, "", frozenset(), 0)
    calls = 0
    data = {"inputs": dict(inputs)}
    for step in recipe.steps:
        count = 1
        if step.foreach is not None and step.foreach.roots() <= {"inputs"}:
            count = len(_items(step, step.foreach.evaluate(data), limits, recipe.name))
        calls += count
    if calls > limits.max_tool_calls:
        raise _too_many_calls(recipe.name, calls, limits)


def _check_tool(
    recipe: Recipe,
    step: Step,
    top: Step,
    ctx: CallContext,
    host: SkillHost,
    catalog: CatalogSnapshot,
    where: str,
    seen: frozenset[str],
    depth: int,
) -> None:
    """Raise the unknown-tool error for `step`'s tool if the caller cannot run it; for a step calling a recipe
    skill, check that skill's steps too (so a nested skill's missing tool stops the run before its first step,
    not halfway). `top` is the outermost recipe's step, which the error's details name."""
    key = ToolId.parse(step.tool_id).key
    here = f"{where}Skill '{recipe.name}', step '{step.id}' ({step.index + 1} of {len(recipe.steps)})"
    missing = key not in catalog.tools and key not in catalog.held and key.split(":")[0] not in catalog.failures
    if missing or not host.may_see(key, ctx):
        error = host.unknown(step.tool_id, ctx)
        error.message = f"{here}: {error.message}"
        error.args = (error.message,)
        error.details = {**error.details, "step_id": top.id, "step_index": top.index}
        raise error
    inner = host.recipe_of(key)
    if inner is not None and key not in seen and depth < MAX_DEPTH:  # (a loop is refused when it runs)
        for inner_step in inner.steps:
            _check_tool(inner, inner_step, top, ctx, host, catalog, f"{here} → ", seen | {key}, depth + 1)


async def _run_step(state: _Run, step: Step) -> None:
    started = time.perf_counter()
    state.current = step
    entry: dict[str, Any] = {"step_id": step.id, "tool_id": step.tool_id}
    data = state.data
    try:
        if step.when is not None and not truthy(step.when.evaluate(data)):
            entry["skipped"] = True
            entry["durationMs"] = 0.0
            data["steps"][step.id] = None
            state.results.append(entry)
            return
        if step.foreach is None:
            value = await _call(state, step, step.args.render(data))
        else:
            items = _items(step, step.foreach.evaluate(data), state.limits, state.recipe.name)
            if state.calls + len(items) > state.limits.max_tool_calls:
                raise _too_many_calls(state.recipe.name, state.calls + len(items), state.limits)
            # Every item's arguments first: a template that fails on one item fails the step before any call.
            each = [step.args.render({**data, "item": item, "index": index}) for index, item in enumerate(items)]
            value = await _call_each(state, step, each)
            entry["calls"] = len(items)
    except ExpressionError as exc:
        cause = {"code": str(ErrorCode.VALIDATION_INPUT), "message": f"a template failed: {exc}"}
        _fail(state, step, entry, cause, started)
    except ApertureError as exc:
        _fail(state, step, entry, exc.to_dict(), started)
    except _StepFailed as failed:
        entry["error"] = failed.error
        entry["durationMs"] = _ms(started)
        state.results.append(entry)
        raise
    entry["value"] = value
    entry["durationMs"] = _ms(started)
    state.results.append(entry)
    data["steps"][step.id] = value
    data["previous"] = value


async def _call(state: _Run, step: Step, args: Any, item: int | None = None) -> Any:
    state.calls += 1
    if state.calls > state.limits.max_tool_calls:
        raise _too_many_calls(state.recipe.name, state.calls, state.limits)
    result = await state.host.run(step.tool_id, args, state.ctx)
    if result.is_error:
        cause = (
            result.error.to_dict()
            if result.error is not None
            else {"code": str(ErrorCode.EXECUTION_FAILED), "message": result.text or "the tool reported an error"}
        )
        if item is not None:
            cause = {**cause, "item_index": item}
        raise _StepFailed(_error(cause, step, state.recipe))
    return result.structured if result.structured is not None else {"text": result.text}


async def _call_each(state: _Run, step: Step, each: list[Any]) -> list[Any]:
    """A foreach step's calls, `step.concurrency` at a time, their results in the items' order. The first
    failure stops the rest (calls not started are not made, those running are cancelled); of the failures
    seen by then, the one of the lowest item is the step's."""
    if step.concurrency == 1:
        return [await _call(state, step, args, index) for index, args in enumerate(each)]
    values: list[Any] = [None] * len(each)
    failures: dict[int, Exception] = {}
    slots = anyio.Semaphore(step.concurrency)

    async def one(index: int, args: Any) -> None:
        async with slots:
            if failures:
                return
            try:
                values[index] = await _call(state, step, args, index)
            except (_StepFailed, ApertureError) as exc:
                failures[index] = exc
                calls.cancel_scope.cancel()

    async with anyio.create_task_group() as calls:
        for index, args in enumerate(each):
            calls.start_soon(one, index, args)
    if failures:
        raise failures[min(failures)]
    return values


def _fail(state: _Run, step: Step, entry: dict[str, Any], cause: dict[str, Any], started: float) -> None:
    error = _error(cause, step, state.recipe)
    entry["error"] = error
    entry["durationMs"] = _ms(started)
    state.results.append(entry)
    raise _StepFailed(error)


def _error(cause: dict[str, Any], step: Step | None, recipe: Recipe | None = None) -> dict[str, Any]:
    """The run's error: the cause's code and fields, a message naming the step, and where it stopped."""
    if step is None:
        return cause
    total = f" of {len(recipe.steps)}" if recipe is not None else ""
    item = f", item {cause['item_index']}" if "item_index" in cause else ""
    message = str(cause.get("message", ""))
    if recipe is not None:
        message = f"Step '{step.id}' ({step.index + 1}{total}, {step.tool_id}{item}) failed: {message}"
    return {**cause, "message": message, "step_id": step.id, "step_index": step.index, "tool_id": step.tool_id}


def _items(step: Step, value: Any, limits: Limits, name: str) -> list[Any]:
    if not isinstance(value, list):
        kind = "null" if value is None else type(value).__name__
        raise ExpressionError(f"foreach gives {kind}, not a list; select a list (for example steps.x.items)")
    if len(value) > limits.max_foreach:
        raise InvalidRequestError(
            f"Skill '{name}', step '{step.id}': foreach gives {len(value):,} items; a step may loop over at most "
            f"{limits.max_foreach:,} (skills.max_foreach). Narrow the list first, for example with a slice "
            "([:100]) or a filter ([?...]).",
            op="run_skill",
            details={"limit": "max_foreach", "items": len(value), "max": limits.max_foreach, "step_id": step.id},
        )
    return value


def _too_many_calls(name: str, calls: int, limits: Limits) -> InvalidRequestError:
    return InvalidRequestError(
        f"Skill '{name}' would make {calls:,} tool calls; a run may make at most {limits.max_tool_calls:,} "
        "(max_tool_calls, up to skills.max_tool_calls; each foreach item counts). Loop over fewer items.",
        op="run_skill",
        details={"limit": "max_tool_calls", "calls": calls, "max": limits.max_tool_calls},
    )


def _stack(ctx: CallContext) -> tuple[str, ...]:
    found = ctx.meta.get(STACK_KEY) if ctx.meta else None
    return tuple(found) if isinstance(found, tuple) else ()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def plan_recipe(
    recipe: Recipe, inputs: Mapping[str, Any], ctx: CallContext, host: SkillHost, limits: Limits
) -> dict[str, Any]:
    """The steps as they would run, without running them: arguments filled in where the inputs decide them,
    `when` and `foreach` decided where they read only the inputs, and which earlier steps each step reads.

    Raises:
        ApertureError: as `preflight` (so a plan that succeeds is one the caller may run).
    """
    preflight(recipe, inputs, ctx, host, limits)
    data = {"inputs": dict(inputs)}
    steps = []
    for step in recipe.steps:
        try:
            entry: dict[str, Any] = {
                "id": step.id,
                "tool_id": step.tool_id,
                "args": step.args.render_known(data, {"inputs"}),
            }
            needs = _reads_steps(step, recipe)
            if needs:
                entry["after"] = needs
            if step.when is not None:
                if step.when.roots() <= {"inputs"}:
                    entry["runs"] = truthy(step.when.evaluate(data))
                else:
                    entry["when"] = f"{{{{ {step.when.source} }}}}"
            if step.foreach is not None:
                if step.foreach.roots() <= {"inputs"}:
                    entry["calls"] = len(step.foreach.evaluate(data))
                else:
                    entry["foreach"] = f"{{{{ {step.foreach.source} }}}}"
        except ExpressionError as exc:
            raise InvalidRequestError(
                f"Step '{step.id}': a template failed on these inputs: {exc}", op="plan_skill"
            ) from None
        steps.append(entry)
    return {"name": recipe.name, "steps": steps}


def _reads_steps(step: Step, recipe: Recipe) -> list[str]:
    """The earlier steps whose results `step` reads."""
    paths = [path for _, path in step.args.reads()]
    for expression in (step.when, step.foreach):
        if expression is not None:
            paths += list(expression.reads)
    ids: list[str] = []
    for path in paths:
        if path[:1] == ("steps",) and len(path) > 1:
            ids.append(path[1])
        elif path[:1] == ("steps",) or not path:
            ids += [s.id for s in recipe.steps[: step.index]]
        elif path[0] == "previous" and step.index > 0:
            ids.append(recipe.steps[step.index - 1].id)
    return list(dict.fromkeys(ids))
