"""Chains: several tool calls run in order in one request, each step able to use the previous step's result,
stopping at the first failure (the reference server's `run_chain`).

Every step runs through the run function it is given, the gateway's ops-wrapped run, as the caller: auth,
rate limits, cache, observe and redaction apply to each step exactly as to a `run_tool` call.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from aperture.execution import CallContext, ProgressFn, RunResult
from aperture.model import (
    ApertureError,
    ChainStepFailedError,
    DetailLevel,
    ExecutionError,
    InputValidationError,
    InvalidRequestError,
    Tool,
    ToolTimeoutError,
    describe,
)
from aperture.model.errors import shorten

RunTool = Callable[[str, Any, CallContext], Awaitable[RunResult]]
"""How a step runs: `Gateway.run(tool_id, args, ctx)`, with every operations rule applied; never raises."""

FindTool = Callable[[str], Tool | None]
"""The tool behind an id as the caller sees it: None for an id that names nothing or a tool it may not see."""

MAX_FILLED_TEXT = 1_000_000
"""Characters a string argument may grow to when templates are filled in (a template repeated 10,000 times
over a large result must not take the gateway's memory)."""


class ChainSettings(BaseModel):
    """The `chain:` section of the configuration: limits on one `run_chain` call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int = Field(
        32, ge=1, le=10_000, description="Most steps one chain may have; a longer one is refused before any step runs."
    )
    timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds a whole chain may take; each step also keeps its own per-call timeout "
        "(execution.timeout, or its backend's).",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainStep:
    """One step: the tool, its arguments, and whether it uses the previous step's result."""

    tool_id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    use_previous: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """What one step did: its structured result (or, without one, its text), or its error; and how long it took."""

    tool_id: str
    structured: Any = None
    text: str | None = None
    error: ApertureError | None = None
    backend: Mapping[str, str] | None = None
    tool: Mapping[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def value(self) -> Any:
        """What the next step gets as `previous`: the structured result, else the text (None after a failure)."""
        if self.error is not None:
            return None
        return self.structured if self.structured is not None else self.text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tool_id": self.tool_id}
        if self.structured is not None:
            out["structured"] = self.structured
        elif self.text and self.error is None:
            out["text"] = self.text
        if self.error is not None:
            out["error"] = _compact(self.error.to_dict())
        if self.backend is not None:
            out["backend"] = dict(self.backend)
        if self.tool is not None:
            out["tool"] = dict(self.tool)
        out["duration_ms"] = round(self.duration_ms, 1)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainResult:
    """A chain's outcome; `to_dict()` is shaped as the reference server's, `{results, final?, error?}` (the
    whole chain's `duration_ms` stays out of it: the agent reads each step's)."""

    steps: tuple[StepResult, ...]
    error: ChainStepFailedError | None = None
    duration_ms: float = 0.0

    @property
    def is_error(self) -> bool:
        """True when a step failed (the surfaces mark the answer as an error; `results` still has every step)."""
        return self.error is not None

    @property
    def final(self) -> Any:
        """The last value a step produced: the last step's on success, else the last successful one's."""
        for step in reversed(self.steps):
            if step.value is not None:
                return step.value
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"results": [step.to_dict() for step in self.steps]}
        final = self.final
        if final is not None:
            out["final"] = final
        if self.error is not None:
            out["error"] = _compact(self.error.to_dict())
        return out


async def run_chain(
    steps: Sequence[ChainStep],
    *,
    run: RunTool,
    find: FindTool,
    ctx: CallContext | None = None,
    settings: ChainSettings | None = None,
    include_backends: bool = True,
    include_tools: bool = False,
) -> ChainResult:
    """Run `steps` in order, each through `run`, and stop at the first that fails.

    A step with `use_previous` gets the previous step's value (its structured result, else its text): at
    `args.previous` when its tool declares a `previous` parameter, and wherever its arguments hold a
    `{{ previous.<path> }}` template (see `fill_templates`). Otherwise arguments go to the tool as given.

    Args:
        run: runs one tool call as the caller (the gateway's ops-wrapped run).
        find: the tool behind an id as the caller sees it, for its parameters, backend and summary.
        ctx: the caller's call context; its progress reporter hears "step i of n".
        settings: the limits (`chain:` in the configuration).
        include_backends: give each step's backend (`{kind, name}`).
        include_tools: give each step's tool summary.

    Raises:
        InvalidRequestError: no steps, more than `settings.max_steps`, or `use_previous` on the first step;
            nothing has run then.
    """
    ctx = ctx or CallContext()
    settings = settings or ChainSettings()
    _check(steps, settings)
    started = time.perf_counter()
    deadline = anyio.current_time() + settings.timeout
    progress = _Progress(ctx, len(steps))
    done: list[StepResult] = []
    failure: ChainStepFailedError | None = None
    for index, step in enumerate(steps):
        await progress.report(index, f"step {index + 1} of {len(steps)}: {shorten(step.tool_id, 60)}")
        tool = find(step.tool_id)
        result = await _run_step(index, step, done[-1] if done else None, tool, run, ctx, progress, deadline, settings)
        if tool is not None:
            result = replace(
                result,
                backend={"kind": tool.backend_kind, "name": tool.namespace} if include_backends else None,
                tool=_compact(describe(tool, DetailLevel.SUMMARY)) if include_tools else None,
            )
        done.append(result)
        if result.error is not None:
            failure = _failed(index, len(steps), step.tool_id, result.error)
            break
    await progress.report(len(steps), "done" if failure is None else f"stopped at step {len(done)}")
    return ChainResult(steps=tuple(done), error=failure, duration_ms=(time.perf_counter() - started) * 1000)


async def _run_step(
    index: int,
    step: ChainStep,
    before: StepResult | None,
    tool: Tool | None,
    run: RunTool,
    ctx: CallContext,
    progress: _Progress,
    deadline: float,
    settings: ChainSettings,
) -> StepResult:
    """Run one step within the chain's deadline; every failure comes back as the step's error."""
    started = time.perf_counter()
    try:
        args = _step_args(index, step, before, tool)
    except ApertureError as refused:
        return StepResult(tool_id=step.tool_id, error=refused, duration_ms=_ms_since(started))
    step_ctx = replace(ctx, progress=progress.within(index)) if ctx.progress is not None else ctx
    result: RunResult | None = None
    started_in_time = anyio.current_time() < deadline
    if started_in_time:
        # A bare deadline scope, as the runner uses: the whole chain's time, whatever the step's own timeout.
        with anyio.CancelScope(deadline=deadline):
            result = await run(step.tool_id, args, step_ctx)
    if result is None:
        verb = "was stopped" if started_in_time else "was not started"
        timed_out = ToolTimeoutError(
            f"Step {index + 1} ('{shorten(step.tool_id, 80)}') {verb}: a whole chain may take at most "
            f"{settings.timeout:g} s (chain.timeout) and that time ran out. Run the remaining steps as a new "
            "chain, or fewer or quicker steps per chain.",
            tool_id=step.tool_id,
            op="run_chain",
        )
        return StepResult(tool_id=step.tool_id, error=timed_out, duration_ms=_ms_since(started))
    if result.error is None and result.is_error:  # the tool answered with an error result of its own
        answered = ExecutionError(
            f"Tool '{shorten(step.tool_id, 80)}' answered with an error: {shorten(result.text, 2000) or '(no text)'}",
            tool_id=step.tool_id,
        )
        return StepResult(tool_id=step.tool_id, error=answered, duration_ms=_ms_since(started))
    return StepResult(
        tool_id=step.tool_id,
        structured=result.structured,
        text=None if result.structured is not None else result.text,
        error=result.error,
        duration_ms=_ms_since(started),
    )


def _check(steps: Sequence[ChainStep], settings: ChainSettings) -> None:
    """Refuse, before anything runs, a chain that cannot run as asked."""
    if not steps:
        raise InvalidRequestError(
            "steps is empty. Give at least one step: {'tool_id': 'namespace:name', 'args': {...}}.", op="run_chain"
        )
    if len(steps) > settings.max_steps:
        raise InvalidRequestError(
            f"The chain has {len(steps):,} steps; this gateway runs at most {settings.max_steps} in one run_chain "
            f"(chain.max_steps). Split it into chains of at most {settings.max_steps} steps, and pass what a chain "
            "needs from the one before it (its 'final') in its first step's args. Nothing was run.",
            op="run_chain",
            details={"steps": len(steps), "max_steps": settings.max_steps},
        )
    if steps[0].use_previous:
        raise InvalidRequestError(
            "The first step (step_index 0) has use_previous, but no step runs before it. Set use_previous to "
            "false there, or put the value in its args. Nothing was run.",
            op="run_chain",
        )


def _step_args(index: int, step: ChainStep, before: StepResult | None, tool: Tool | None) -> Any:
    """The arguments a step's tool gets: as given, or (with `use_previous`) with the previous value filled in.

    Raises:
        InputValidationError: a template that finds nothing, or a previous value that would go nowhere.
    """
    if not step.use_previous or before is None:
        return step.args
    previous = before.value
    try:
        args, filled = fill_templates(step.args, previous)
    except TemplateError as problem:
        raise InputValidationError(
            f"The template {problem.template!r} in {problem.where} {problem.reason}.",
            tool_id=step.tool_id,
            op="run_chain",
            details={"template": problem.template, "where": problem.where},
        ) from None
    takes_previous = tool is not None and "previous" in (tool.input_schema.get("properties") or {})
    if takes_previous:
        args = {**args, "previous": previous}
    elif not filled and tool is not None:
        raise InputValidationError(
            "use_previous is set, but the tool has no 'previous' parameter and the args hold no "
            "'{{ previous... }}' template, so the previous result would go nowhere. Put it in an argument, "
            f"e.g. {_suggest(tool, step.args, previous)}, or set use_previous to false. {_has(previous)}",
            tool_id=step.tool_id,
            op="run_chain",
        )
    return args


class TemplateError(ValueError):
    """A template in a step's arguments that cannot be filled: which one, where, and why."""

    def __init__(self, template: str, where: str, reason: str) -> None:
        super().__init__(f"{template} in {where} {reason}")
        self.template = template
        self.where = where
        self.reason = reason


_TEMPLATE = re.compile(r"\{\{\s*(previous\b[^{}]*?)\s*\}\}")
_PATH = re.compile(r"previous((?:\.[A-Za-z0-9_$-]+|\[\d+\])*)")
_PART = re.compile(r"\.([A-Za-z0-9_$-]+)|\[(\d+)\]")


def fill_templates(args: Mapping[str, Any], previous: Any) -> tuple[dict[str, Any], int]:
    """Fill `{{ previous.<path> }}` templates in a step's arguments from the previous step's value.

    The chain's whole template language, kept in this one function so that a richer expression language
    (the skills' one) can replace it. A string that is exactly one template becomes the value it names, typed
    (an object stays an object, a number a number); templates inside longer text are written into it as text
    (strings as they are, anything else as JSON). `<path>` is dotted keys and list indexes: `previous`,
    `previous.slug`, `previous.items.0.name`, `previous.items[0].name`. Other text, `{{ ... }}` included, is
    left alone.

    Returns:
        The filled arguments and how many templates there were.

    Raises:
        TemplateError: a template whose path finds nothing, or that is not of this form.
    """
    count = 0

    def fill(value: Any, where: str) -> Any:
        nonlocal count
        if isinstance(value, str):
            found = list(_TEMPLATE.finditer(value)) if "{{" in value else []
            if not found:
                return value
            count += len(found)
            if len(found) == 1 and found[0].span() == (0, len(value)):
                return _lookup(previous, found[0].group(0), found[0].group(1), where)
            parts, size, end = [], 0, 0
            for match in found:
                named = _lookup(previous, match.group(0), match.group(1), where)
                text = named if isinstance(named, str) else json.dumps(named, ensure_ascii=False)
                parts += [value[end : match.start()], text]
                size += match.start() - end + len(text)
                end = match.end()
                if size > MAX_FILLED_TEXT:
                    raise TemplateError(match.group(0), where, f"makes a text of over {MAX_FILLED_TEXT:,} characters")
            return "".join([*parts, value[end:]])
        if isinstance(value, Mapping):
            return {key: fill(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return value

    filled = {key: fill(value, f"args.{key}") for key, value in args.items()}
    return filled, count


def _lookup(previous: Any, template: str, expression: str, where: str) -> Any:
    path = _PATH.fullmatch(expression)
    if path is None:
        raise TemplateError(
            template, where, "is not one this chain understands: write '{{ previous }}' or '{{ previous.key.0.key }}'"
        )
    current, walked = previous, "previous"
    if current is None:
        raise TemplateError(template, where, "finds nothing: the previous step returned no result")
    for key, index in _PART.findall(path.group(1)):
        if isinstance(current, Mapping):
            name = key or index
            if name not in current:
                keys = ", ".join(shorten(str(k), 40) for k in list(current)[:20]) or "none"
                raise TemplateError(template, where, f"finds nothing: {walked} has no key {name!r} (its keys: {keys})")
            current, walked = current[name], f"{walked}.{name}"
        elif isinstance(current, list) and (key.isdigit() or index):
            position = int(key or index)
            if position >= len(current):
                raise TemplateError(template, where, f"finds nothing: {walked} has {len(current)} items")
            current, walked = current[position], f"{walked}[{position}]"
        elif isinstance(current, str) and walked == "previous":
            raise TemplateError(
                template,
                where,
                "finds nothing: the previous result is text (no structured "
                "result), not an object; '{{ previous }}' is that text",
            )
        else:
            kind = "a list" if isinstance(current, list) else f"a {type(current).__name__}, not an object"
            raise TemplateError(template, where, f"finds nothing: {walked} is {kind}")
    return current


def _has(previous: Any) -> str:
    """What the previous value offers, for an error message."""
    if previous is None:
        return "The previous step returned no result."
    if isinstance(previous, Mapping):
        keys = ", ".join(shorten(str(k), 40) for k in list(previous)[:20])
        return f"The previous result is an object with keys: {keys or 'none'}."
    if isinstance(previous, str):
        return "The previous result is text (it had no structured result): use '{{ previous }}'."
    return f"The previous result is {'a list' if isinstance(previous, list) else 'a ' + type(previous).__name__}."


def _suggest(tool: Tool, args: Mapping[str, Any], previous: Any) -> str:
    """An argument with a template, for the error of a previous value that goes nowhere."""
    names = [p.name for p in tool.parameters()]
    name = next((n for n in names if n not in args), names[0] if names else "text")
    path = "previous"
    if isinstance(previous, Mapping) and previous:
        path += f".{next(iter(previous))}"
    return json.dumps({name: f"{{{{ {path} }}}}"})


def _failed(index: int, total: int, tool_id: str, cause: ApertureError) -> ChainStepFailedError:
    details: dict[str, Any] = {"cause_code": str(cause.code)}
    if cause.op:
        details["cause_op"] = cause.op
    if cause.backend_kind:
        details["cause_backend_kind"] = cause.backend_kind
    if cause.retryable:
        details["cause_retryable"] = True
    cause_text = cause.message if cause.message.rstrip().endswith((".", "!", "?")) else f"{cause.message.rstrip()}."
    after = (
        "Fix it and run the chain again."
        if index == 0
        else "The steps before it ran and are not undone (their output is in results); fix this step and run it "
        "and the steps after it as a new chain."
    )
    return ChainStepFailedError(
        f"Step {index + 1} of {total} (step_index {index}, '{shorten(tool_id, 80)}') failed: {cause_text} {after}",
        step_index=index,
        details=details,
    )


class _Progress:
    """Progress of a chain for its caller: step i of n, and within a step the tool's own progress as a
    fraction of it; always increasing, as MCP asks."""

    def __init__(self, ctx: CallContext, total: int) -> None:
        self._ctx = ctx
        self._total = total
        self._last = -1.0

    async def report(self, value: float, message: str) -> None:
        if self._ctx.progress is not None and value > self._last:
            self._last = value
            await self._ctx.report_progress(value, self._total, message)

    def within(self, index: int) -> ProgressFn:
        async def forward(progress: float, total: float | None, message: str | None) -> None:
            if total:
                share = min(max(progress / total, 0.0), 0.99)
                await self.report(index + share, f"step {index + 1} of {self._total}: {message or ''}".rstrip(": "))

        return forward


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Fields without the empty ones (tokens the agent would read for nothing)."""
    return {k: v for k, v in data.items() if v is not None and v != {}}


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
