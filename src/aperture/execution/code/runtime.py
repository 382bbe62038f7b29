"""The `Runtime` seam of code mode: one isolated interpreter per execution, started with limits, exchanging
bridge frames with the gateway, stopped at the end. A runtime is one module that registers itself here; the
prelude (`_prelude.py`) and the framing (`protocol.py`) are shared, and `sandbox.run_sandboxed` runs any
command that speaks them, so a runtime only says how to start its interpreter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

OnCall = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""What a runtime calls for each bridged tool call: `await on_call(method, params)` -> the JSON value to send
back. It raises `ApertureError` for a call that fails (the program gets its message as a `ToolError`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one execution may use."""

    timeout: float = 10.0
    """Wall-clock seconds, start to finish; past it the whole process tree is killed."""
    max_tool_calls: int = 100
    cpu_seconds: int = 10
    memory_bytes: int = 512 * 1024 * 1024
    """Address space of each process (RLIMIT_AS)."""
    file_bytes: int = 16 * 1024 * 1024
    """The largest file it may write (RLIMIT_FSIZE); the tmpfs is capped to this too."""
    open_files: int = 64
    processes: int = 16
    max_output_bytes: int = 1024 * 1024
    """stdout and stderr each; past it the program is stopped."""
    max_frame_bytes: int = 4 * 1024 * 1024
    max_bridge_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgedCall:
    """One tool call the program made through the bridge."""

    method: str
    target: str
    """The tool id (run, describe) or the query (search)."""
    duration_ms: float
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "method": self.method,
            "id": self.target,
            "durationMs": round(self.duration_ms, 3),
            "outcome": "ok" if self.ok else "error",
        }
        if self.error:
            row["error"] = self.error
        return row


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one execution ended. `error` is one sentence for the program's author (often a model): what happened
    and what to do; None when the program finished and `value` is its result."""

    value: Any = None
    error: str | None = None
    stopped: str | None = None
    """Why the sandbox stopped it, when it did: timeout, output, bridge, tool_calls, crashed."""
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    calls: tuple[BridgedCall, ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        """execute_code's result: `{value, stdout?, stderr?, durationMs, toolCalls, resources, error?, stopped?}`."""
        out: dict[str, Any] = {"value": self.value}
        if self.error is not None:
            out["error"] = self.error
        if self.stopped is not None:
            out["stopped"] = self.stopped
        if self.stdout:
            out["stdout"] = self.stdout
        if self.stderr:
            out["stderr"] = self.stderr
        out["durationMs"] = round(self.duration_ms, 3)
        out["toolCalls"] = [call.to_dict() for call in self.calls]
        out["resources"] = dict(self.resources)
        return out


class Runtime(Protocol):
    """An isolated interpreter for one execution at a time (a runtime object may run many concurrently)."""

    name: str

    def problem(self) -> str | None:
        """Why this runtime cannot run here (what is missing and how to get it), or None when it can."""
        ...

    async def run(self, code: str, limits: Limits, on_call: OnCall) -> Outcome:
        """Run `code` within `limits`, calling `on_call` for each bridged tool call; never raises for anything
        the program does (its failures, and the limits it hits, are in the `Outcome`)."""
        ...

    async def warm(self, limits: Limits) -> None:
        """Get ready for executions with `limits` ahead of the first (a pool of loaded interpreters); may do
        nothing."""
        ...

    async def aclose(self) -> None:
        """Stop whatever it keeps running between executions."""
        ...


RuntimeFactory = Callable[..., Runtime]
"""Makes a runtime from the keyword options of the `execution.code` settings it takes (others it ignores)."""
_RUNTIMES: dict[str, RuntimeFactory] = {}


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    """Make a runtime choosable by `name` in the configuration (`execution.code.runtime`)."""
    _RUNTIMES[name] = factory


def runtime_names() -> list[str]:
    """The names of the registered runtimes."""
    return sorted(_RUNTIMES)


def runtime_named(name: str, **options: Any) -> Runtime:
    """A new runtime of kind `name`, given the settings' `options` (`pool_size`, ...).

    Raises:
        KeyError: no runtime has that name.
    """
    return _RUNTIMES[name](**options)
