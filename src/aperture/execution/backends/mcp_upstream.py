"""What an upstream MCP server is to the gateway: where it runs, how it restarts, how its tools and
failures are described. The supervised session itself is `mcp.McpBackend`."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from aperture.execution.backends.mcp_env import DEFAULT_INHERITED_ENV
from aperture.execution.backends.mcp_stdio import MAX_LINE_BYTES, ProcessWatch
from aperture.model import Tool, ToolAnnotations, ToolId, namespace_text

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-]")
MAX_PAGES = 1000
BACKEND_KIND = "mcp"


class UpstreamState(StrEnum):
    IDLE = "idle"  # lazy: not started until the first call
    STARTING = "starting"
    READY = "ready"
    DOWN = "down"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class StdioTarget:
    """An upstream started as a child process, with the variables of the gateway's environment that
    `inherit_env` names (names or globs; `mcp_env.DEFAULT_INHERITED_ENV` by default), then `env`."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    inherit_env: tuple[str, ...] = DEFAULT_INHERITED_ENV
    cwd: str | None = None
    max_message_bytes: int = MAX_LINE_BYTES

    def __str__(self) -> str:
        return " ".join([self.command, *self.args])


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTarget:
    """An upstream reached over streamable HTTP (or legacy SSE)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    sse: bool = False
    max_message_bytes: int = MAX_LINE_BYTES

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """Exponential backoff between restarts: `initial * 2**n`, capped at `maximum` seconds."""

    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2**attempt))


def server_context(info: mcp_types.Implementation | None, instructions: str | None) -> str:
    """What an upstream says about itself in its answer to initialize: its title (else its name), its
    description and its instructions, as one line (the namespace text of its tools; the registry bounds it once
    the secrets are out)."""
    title = (info.title or info.name) if info is not None else None
    return namespace_text(title, info.description if info is not None else None, instructions, limit=None)


def upstream_tool(namespace: str, tool: mcp_types.Tool, *, context: str = "") -> tuple[Tool, str]:
    """An upstream tool as a gateway `Tool`, and the upstream's own name for it; `context` is what the server
    says about itself (`server_context`)."""
    name = _UNSAFE_NAME.sub("_", tool.name)[:128] or "_"
    hints = tool.annotations
    annotations = ToolAnnotations(
        title=hints.title if hints else None,
        read_only=hints.read_only_hint if hints else None,
        destructive=hints.destructive_hint if hints else None,
        idempotent=hints.idempotent_hint if hints else None,
        open_world=hints.open_world_hint if hints else None,
    )
    converted = Tool(
        id=ToolId(namespace, name),
        title=tool.title,
        description=tool.description or "",
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=annotations,
        backend_kind=BACKEND_KIND,
        namespace_description=context,
    )
    return converted, tool.name


async def all_pages(fetch: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
    """Every item of a paginated listing (bounded, so a server that always returns a cursor cannot loop us)."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        items += getattr(page, field)
        cursor = page.next_cursor
        if not cursor:
            break
    return items


def session_lost(exc: MCPError) -> bool:
    """Whether a streamable-HTTP error means the server no longer knows our session (HTTP 404)."""
    message = exc.message.lower()
    return "session" in message and ("not found" in message or "terminated" in message)


def stopped(watch: ProcessWatch, *, starting: bool) -> str:
    """Why the upstream's process stopped. One that exited while `starting` (before it was ready) most often
    lacks a variable (a key, a certificate, a proxy): the text says where to give it."""
    if not starting or watch.returncode is None or watch.problem:
        return f"upstream stopped: {watch.describe()}"
    tail = watch.stderr_tail(5)
    return (
        f"upstream exited with code {watch.returncode} during start; if it needs a variable from the gateway's "
        "environment, give it under the backend's `env:` or name it in `inherit_env:` (docs/configuration.md)"
        + (f"; stderr ends with:\n{tail}" if tail else "")
    )


def explain_failure(exc: BaseException, watch: ProcessWatch, *, starting: bool = True) -> str:
    """Why a start (or, not `starting`, a ready session) failed, in one line: the process's story when there
    is one."""
    if isinstance(exc, FileNotFoundError):
        return str(exc)
    if watch.returncode is not None or watch.problem:
        return stopped(watch, starting=starting)
    if isinstance(exc, TimeoutError):
        return "no answer to initialize in time"
    if isinstance(exc, MCPError):
        return f"upstream error {exc.code}: {exc.message}"
    if isinstance(exc, ExceptionGroup):
        return "; ".join(explain_failure(e, watch, starting=starting) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
