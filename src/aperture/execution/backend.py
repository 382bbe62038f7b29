"""The `Backend` protocol: anything that can list tools and run them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

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
