"""The `server.a2a:` section: the Agent2Agent surface served beside MCP over HTTP."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class A2aConfig(BaseModel):
    """The A2A surface (`aperture serve --transport http` serves it beside `/mcp` when the `a2a` extra is
    installed): the agent card, the JSON-RPC and HTTP+JSON bindings, and the tasks they keep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Serve A2A over HTTP (needs the 'a2a' extra: pip install '.[a2a]').")
    path: str = Field(
        "/a2a", pattern=r"^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$", description="URL path of the JSON-RPC and REST bindings."
    )
    public_url: str | None = Field(
        None,
        description="The base URL the agent card names (e.g. https://gw.example.com behind a proxy); by default "
        "the scheme and Host of the request that fetched the card.",
    )
    max_tasks: int = Field(
        1000, ge=1, description="Tasks kept in the store (per replica), all callers together; the oldest go first."
    )
    task_ttl: float = Field(3600.0, gt=0, description="Seconds a task is kept after its last update.")
    max_request_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Most bytes one A2A request body may take; past it the answer is 413 with the limit.",
    )
