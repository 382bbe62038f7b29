"""`kind: mcp`: an upstream MCP server, started as a process (stdio) or reached at a URL (streamable HTTP, SSE)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext
from aperture.execution import HttpTarget, McpBackend, StdioTarget
from aperture.execution.code import CodeSettings

InheritEnv = bool | Literal["all"] | list[str]
"""Which variables of the gateway's environment stdio upstreams get (see `check_inherit_env`)."""
_ENV_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\]!-]+$")


def check_inherit_env(value: InheritEnv) -> InheritEnv:
    """`value`, checked: a list holds variable names or globs."""
    if isinstance(value, list):
        bad = [p for p in value if not _ENV_PATTERN.match(p)]
        if bad:
            raise ValueError(
                f"{', '.join(repr(p) for p in bad)} is not a variable name or glob (letters, digits, _ and * ? [ ]); "
                "write names such as SSL_CERT_FILE or globs such as 'AWS_*'"
            )
    return value


class McpBackendConfig(BackendSettings):
    """An upstream MCP server: a command to start (stdio) or a URL (streamable HTTP)."""

    kind: Literal["mcp"]
    command: str | list[str] | None = Field(None, description="Program to start, or [program, arg, ...] (stdio).")
    args: list[str] = Field(default_factory=list, description="Arguments after the command.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for the process; they win over inherited ones (inherit_env).",
    )
    inherit_env: InheritEnv = Field(
        True,
        description="Variables of the gateway's environment the process gets (command only). true: those of "
        "execution.inherit_env; a list of names or globs: those and these; false: none (only env); all: every "
        "one, the gateway's own secrets included.",
    )
    cwd: str | None = Field(None, description="Working directory of the process, relative to this file.")
    url: str | None = Field(None, description="Endpoint of a running server (streamable HTTP, or SSE).")
    transport: Literal["http", "sse"] = Field("http", description="For url: streamable HTTP, or legacy SSE.")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers for every request (url only).")
    timeout: float | None = Field(None, gt=0, description="Seconds a call may take (default: execution.timeout).")
    init_timeout: float = Field(30.0, gt=0, description="Seconds the upstream may take to start and initialize.")
    lazy: bool = Field(
        False,
        description="Start on the first call, listing the tools approved last time (starts at once the first time).",
    )
    max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest message (one stdio line, one HTTP answer or SSE event) taken from the upstream. "
        "A longer stdio line stops the upstream (it is restarted); a longer HTTP answer fails its call.",
    )
    isolation: Literal["shared", "per_client"] = Field(
        "shared",
        description="shared: one upstream session carries every client's calls. per_client: each client gets a "
        "session of its own (a process of its own, for a command), so sampling and elicitation requests reach "
        "the right client even when calls overlap on stdio.",
    )
    client_sessions: int = Field(
        16, ge=1, le=1000, description="With isolation per_client: most per-client sessions open at once."
    )
    client_idle_timeout: float = Field(
        300.0, gt=0, description="With isolation per_client: seconds a client's session stays open after its last call."
    )
    code: CodeSettings = Field(
        default_factory=CodeSettings,
        description="Code mode: the execute_code meta-tool, off unless enabled (docs/code-mode.md).",
    )

    _valid_inherit_env = field_validator("inherit_env")(classmethod(lambda cls, v: check_inherit_env(v)))

    @model_validator(mode="after")
    def _one_target(self) -> McpBackendConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (start a process, stdio) or 'url' (streamable HTTP)")
        if self.url is not None and self.inherit_env is not True:
            raise ValueError("'inherit_env' is for a 'command' (a process the gateway starts); remove it for a url")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("'command' is an empty list; give the program to start")
        return self

    def argv(self) -> list[str]:
        """The command and its arguments."""
        command = self.command if isinstance(self.command, list) else [self.command or ""]
        return [*command, *self.args]


def build_mcp(spec: McpBackendConfig, context: BuildContext) -> McpBackend:
    """The supervised upstream (started by the gateway); a lazy one lists the tools approved last time."""
    config = context.config
    target: StdioTarget | HttpTarget
    if spec.url is not None:
        target = HttpTarget(
            url=spec.url, headers=spec.headers, sse=spec.transport == "sse", max_message_bytes=spec.max_message_bytes
        )
    else:
        program, *args = spec.argv()
        if "/" in program and not program.startswith("/"):
            program = str(context.resolve(program))  # a relative path is relative to the configuration file
        cwd = str(context.resolve(spec.cwd)) if spec.cwd else None
        target = StdioTarget(
            command=program,
            args=tuple(args),
            env=spec.env,
            inherit_env=config.execution.inherited(spec.inherit_env),
            cwd=cwd,
            max_message_bytes=spec.max_message_bytes,
        )
    guard = context.guard
    known = guard.store.known_tools(spec.name, McpBackend.kind) if guard is not None and spec.lazy else []
    return McpBackend(
        spec.name,
        target,
        init_timeout=spec.init_timeout,
        lazy=spec.lazy,
        known_tools=known,
        isolation=spec.isolation,
        client_sessions=spec.client_sessions,
        client_idle_timeout=spec.client_idle_timeout,
    )


MCP = BackendKind("mcp", McpBackendConfig, build_mcp)
