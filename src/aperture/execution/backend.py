"""The `Backend` protocol: anything that can list tools and run them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import anyio.abc
import mcp_types

from aperture.model import Tool

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
"""Report progress: `(progress, total, message)`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """Per-call facts that travel with a tool call through the pipeline; change with `dataclasses.replace`."""

    timeout: float | None = None
    progress: ProgressFn | None = None
    request_id: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    peer: Any = None
    """The caller's protocol session, for requests a backend sends back during the call (sampling,
    elicitation): an object with the SDK's `ServerSession.send_request` (or None)."""

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Forward progress to the caller, when the caller asked for it."""
        if self.progress is not None:
            await self.progress(progress, total, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthStatus:
    """A backend's health at one moment."""

    healthy: bool
    message: str = ""
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "message": self.message,
            "checked_at": self.checked_at.isoformat(),
            "latency_ms": round(self.latency_ms, 3),
        }


@runtime_checkable
class Backend(Protocol):
    """A source of tools. Implementations need not inherit from anything.

    `call` returns either a `ToolOutput` (already normalised) or a plain Python value, which the
    runner normalises into MCP content blocks. It raises `ApertureError`s for failures it understands.
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    async def list_tools(self) -> Sequence[Tool]: ...

    async def get_tool(self, name: str) -> Tool | None: ...

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any: ...

    async def health(self) -> HealthStatus: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class CountsUnrouted(Protocol):
    """A backend that drops what it cannot match to a call (an upstream's log messages, its requests back to
    a client) rather than guess, and counts them for the operator."""

    @property
    def unrouted(self) -> Mapping[str, int]:
        """How many messages matched no call, by kind (`sampling`, `elicitation`, `progress`, `log`)."""
        ...


@runtime_checkable
class ChangeNotifier(Protocol):
    """A backend whose tool list can change while it runs; the registry listens for that."""

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None: ...


@runtime_checkable
class ResourceSource(Protocol):
    """A backend that offers MCP resources besides its tools (an upstream MCP server; the skills, their files).

    The MCP surface lists and reads every source's resources, each as its caller may see them.
    """

    @property
    def name(self) -> str: ...

    async def list_resources(self) -> list[mcp_types.Resource]: ...

    async def list_resource_templates(self) -> list[mcp_types.ResourceTemplate]: ...

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult: ...

    async def subscribe_resource(self, uri: str, subscribe: bool = True) -> None: ...


@runtime_checkable
class ToolResources(Protocol):
    """A resource source whose resources belong to its tools: a caller that may not see the tool may not read them."""

    def resource_tool(self, uri: str) -> str | None:
        """The id of the tool `uri` belongs to (None: to none)."""
        ...


# --- what the gateway asks of a backend beyond `Backend` (each checked structurally, never by class) -------------


@runtime_checkable
class Startable(Protocol):
    """A backend with work of its own to run (a supervised process, a file watch): the gateway starts it in its
    task group before registering it, and every backend's start runs concurrently with the others'."""

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start the background work in `task_group`; return once the backend has tools to list (or failed)."""
        ...


@runtime_checkable
class Availability(Protocol):
    """A backend that can be down while the gateway runs (a process that could not start, a server that went
    away): while it is, its tools are marked down (or hidden) in search and its namespace says why."""

    def down_reason(self) -> str | None:
        """Why the backend cannot run calls now, for the operator (may quote a command); None while it can."""
        ...


@runtime_checkable
class Reloadable(Protocol):
    """A backend that reads files, and reads them again when told (SIGHUP to `serve`, `aperture capabilities
    reload`), besides any watching of its own."""

    async def reload(self) -> Any:
        """Read the files again now; returns a report with a one-line `summary()`."""
        ...


@runtime_checkable
class PromptSource(Protocol):
    """A backend that offers MCP prompts (an upstream MCP server); the MCP surface lists them together."""

    @property
    def name(self) -> str: ...

    async def list_prompts(self) -> list[mcp_types.Prompt]: ...

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> mcp_types.GetPromptResult: ...


@runtime_checkable
class CompletionSource(Protocol):
    """A backend that completes the arguments of its prompts and resource templates."""

    async def complete(
        self, ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference, argument: dict[str, str]
    ) -> mcp_types.CompleteResult: ...


ResourceListener = Callable[[str, str], Coroutine[Any, Any, None]]
"""`(backend, uri)`: a resource the backend offers changed."""
LogListener = Callable[[str, mcp_types.LoggingMessageNotificationParams, CallContext], Coroutine[Any, Any, None]]
"""`(backend, params, caller)`: a log message of the backend's, and the one call it belongs to."""


@runtime_checkable
class ResourceNotifier(Protocol):
    """A resource source that tells when one of its resources changed (for subscriptions)."""

    def set_resource_listener(self, listener: ResourceListener | None) -> None: ...


@runtime_checkable
class LogSource(Protocol):
    """A backend that sends log messages during calls, each forwarded to the client whose call it belongs to."""

    def set_log_listener(self, listener: LogListener | None) -> None: ...
