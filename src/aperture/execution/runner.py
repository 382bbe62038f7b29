"""The run pipeline: validate id -> resolve tool -> validate and coerce input -> select backend -> execute
with a timeout -> normalise -> validate output -> `RunResult`."""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import anyio
import pydantic

from aperture.execution.backend import Backend, CallContext
from aperture.execution.registry import BackendRegistry, CatalogSnapshot
from aperture.execution.result import RunResult, normalize, redact_result, validation_error_text
from aperture.model import (
    ApertureError,
    ArgumentValidator,
    BackendUnavailableError,
    ExecutionError,
    InputValidationError,
    OutputValidator,
    Redactor,
    Tool,
    ToolHeldError,
    ToolId,
    ToolTimeoutError,
    UnknownToolError,
)
from aperture.model.errors import shorten

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
RunFn = Callable[["ToolCall"], Awaitable[RunResult]]
"""What middleware wraps: one call in, one result out."""
Middleware = Callable[[RunFn], RunFn]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One request to run a tool, as it travels through the middleware stack."""

    tool_id: str
    args: Any
    ctx: CallContext = field(default_factory=CallContext)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A tool with its validators, compiled once and reused until the tool definition changes."""

    tool: Tool
    inputs: ArgumentValidator
    outputs: OutputValidator | None


class Runner:
    """Runs tools from the registry's catalog; never raises for a failed call, returns a failed `RunResult`.

    Args:
        registry: where tools and backends come from.
        default_timeout: seconds a call may take when neither the call nor the backend says otherwise.
        backend_timeouts: per-backend overrides of the default timeout.
        redactor: takes the configured secrets out of every result and error, whatever the backend.
    """

    def __init__(
        self,
        registry: BackendRegistry,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        backend_timeouts: Mapping[str, float] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.registry = registry
        self.redactor = redactor or Redactor()
        self.default_timeout = default_timeout
        self.backend_timeouts = dict(backend_timeouts or {})
        self._compiled: dict[str, _Compiled] = {}

    async def __call__(self, call: ToolCall) -> RunResult:
        return await self.run(call.tool_id, call.args, call.ctx)

    async def run(self, tool_id: str, args: Any, ctx: CallContext | None = None) -> RunResult:
        """Run one tool call through the whole pipeline."""
        ctx = ctx or CallContext()
        started = time.perf_counter()
        shown_id = tool_id if isinstance(tool_id, str) else repr(tool_id)
        try:
            result = await self._run(tool_id, args, ctx)
        except ApertureError as error:
            error.tool_id = error.tool_id or shown_id
            error.op = error.op or "run_tool"
            # Before the result is built, so the text the model reads is the redacted message.
            return RunResult.failure(shown_id, self.redactor.error(error), _ms_since(started))
        return redact_result(
            RunResult(
                tool_id=shown_id,
                content=result.content,
                structured=result.structured,
                is_error=result.is_error,
                duration_ms=_ms_since(started),
            ),
            self.redactor,
        )

    def resolve(self, tool_id: str) -> tuple[Tool, Backend]:
        """The tool and backend for an id, or `UnknownToolError` naming the closest ids.

        Raises:
            InvalidToolIdError: for a malformed id.
            UnknownToolError: for a well-formed id that names no tool, or a bare name (ids of that name suggested).
        """
        if ToolId.is_bare_name(tool_id):
            raise UnknownToolError(tool_id, closest_ids(tool_id, self.registry.snapshot.tools))
        parsed = ToolId.parse(tool_id)
        found = self.registry.find_tool(parsed.key)
        if found is None or (parsed.version is not None and found[0].version not in (None, parsed.version)):
            raise_unavailable_or_unknown(tool_id, parsed, self.registry.snapshot)
        return found

    async def _run(self, tool_id: str, args: Any, ctx: CallContext) -> Any:
        tool, backend = self.resolve(tool_id)
        compiled = self._compile(tool)
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise InputValidationError(
                f"Arguments for tool '{tool.key}' must be a JSON object of parameter names to values; "
                f"got {type(args).__name__}.\n" + compiled.inputs.explain([]).split("\n", 1)[1],
                tool_id=tool.key,
            )
        coerced = compiled.inputs.validate(args)
        timeout = ctx.timeout or self.backend_timeouts.get(backend.name, self.default_timeout)
        # A bare deadline scope: `anyio.fail_after` (a generator context manager) costs about twice as much.
        deadline = anyio.CancelScope(deadline=anyio.current_time() + timeout)
        try:
            with deadline:
                raw = await backend.call(tool.name, coerced, ctx)
            if deadline.cancelled_caught:
                raise TimeoutError
        except TimeoutError:
            raise ToolTimeoutError(
                f"Tool '{tool.key}' did not finish within {timeout:g} s and was stopped. "
                "Retry later, or with arguments that ask for less work.",
                backend_kind=backend.kind,
            ) from None
        except ApertureError as error:
            error.backend_kind = error.backend_kind or backend.kind
            raise
        except pydantic.ValidationError as exc:
            raise InputValidationError(
                f"Invalid arguments for tool '{tool.key}': " + "; ".join(validation_error_text(exc)),
                backend_kind=backend.kind,
            ) from exc
        except Exception as exc:
            logger.info("tool %s raised %s: %s", tool.key, type(exc).__name__, exc)
            raise ExecutionError(
                f"Tool '{tool.key}' failed: {type(exc).__name__}: {exc}",
                details={"exception": type(exc).__name__},
                backend_kind=backend.kind,
            ) from exc
        output = normalize(raw, tool_id=tool.key)
        if compiled.outputs is not None and not output.is_error:
            if output.structured is None:
                compiled.outputs.check_missing()
            else:
                compiled.outputs.check(output.structured)
        return output

    def _compile(self, tool: Tool) -> _Compiled:
        compiled = self._compiled.get(tool.key)
        if compiled is None or compiled.tool is not tool:
            outputs = OutputValidator(tool.output_schema, tool_id=tool.key) if tool.output_schema is not None else None
            compiled = _Compiled(tool, ArgumentValidator(tool.input_schema, tool_id=tool.key), outputs)
            self._compiled[tool.key] = compiled
        return compiled


def raise_unavailable_or_unknown(tool_id: str, parsed: ToolId, snapshot: CatalogSnapshot) -> NoReturn:
    """Raise `ToolHeldError`, `BackendUnavailableError` or `UnknownToolError`, whichever explains the miss."""
    held = snapshot.held.get(parsed.key)
    if held is not None and held.new:
        raise ToolHeldError(
            f"Tool '{parsed.key}' is pending approval: backend '{parsed.namespace}' added it after its first "
            "listing, and new tools are held for review (integrity.new_tools: hold), since a tool that appears "
            "later can carry instructions nobody has read. It cannot be used until an operator reviews it with "
            f"`aperture tools pending` and runs `aperture tools approve {parsed.key}`. Use another tool meanwhile.",
            tool_id=tool_id,
            details={"new": True, "changed": []},
        )
    if held is not None:
        fields = ", ".join(held.changed_fields)
        raise ToolHeldError(
            f"Tool '{parsed.key}' is held for review: its definition ({fields}) changed since it was approved, "
            "which is how tool poisoning gets in. It cannot be used until an operator runs "
            f"`aperture tools approve {parsed.key}`. Use another tool meanwhile.",
            tool_id=tool_id,
            details={"changed": held.changed_fields},
        )
    failure = snapshot.failures.get(parsed.namespace)
    if failure is not None:
        raise BackendUnavailableError(
            f"Backend '{parsed.namespace}' is unavailable, so its tools cannot be used now: {shorten(failure, 400)} "
            "Retry later, or use a tool from another namespace.",
            tool_id=tool_id,
            details={"backend": parsed.namespace, "reason": failure},
        )
    raise UnknownToolError(tool_id, closest_ids(parsed.key, snapshot.tools))


def closest_ids(key: str, tools: Mapping[str, Tool], limit: int = 3) -> list[str]:
    """The ids most like `key`: by name within its namespace when that exists, else across all ids.

    Names containing the asked-for name count too, so `toolbox:calc` finds `toolbox:calculate`. For a bare
    name (`hash_text`) every id with exactly that name comes first, all of them when several namespaces have it.
    """
    namespace, _, name = key.rpartition(":")
    if not namespace and ":" not in key:
        exact = sorted(k for k, tool in tools.items() if tool.name == key)
        if exact:
            return exact
    in_namespace = [k for k in tools if k.startswith(f"{namespace}:")] if namespace else []
    if in_namespace:
        names = {k.split(":", 1)[1]: k for k in in_namespace}
        found = [names[n] for n in difflib.get_close_matches(name, list(names), n=limit, cutoff=0.6)]
        found += [k for n, k in names.items() if name and (name in n or n in name) and k not in found]
    else:
        found = difflib.get_close_matches(key, list(tools), n=limit, cutoff=0.6)
        by_name = {k.split(":", 1)[1]: k for k in tools}
        found += [by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=limit, cutoff=0.7)]
    return list(dict.fromkeys(found))[:limit]


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
