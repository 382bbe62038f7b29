"""The `engine` backend: engines mounted in the gateway, called in-process.

One engine's tools keep their names (`ci:build`); with several engines in one backend each name is
prefixed with its engine's (`ci:wheel-builder.build`, `ci:pytest-runner.run`), since every engine
has the same few tool names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import mcp_types

from aperture.engines.engine import Engine, EngineTool
from aperture.execution._imports import import_user_module
from aperture.execution.backend import CallContext, HealthStatus
from aperture.execution.result import ToolOutput
from aperture.model import ConfigError, Tool, ToolId, UnknownToolError


def load_engine(reference: str, *, path: str | Path | None = None) -> Engine:
    """The `Engine` that `module` or `module:attribute` names.

    Raises:
        ConfigError: the module does not import, or holds no engine, or several without `:attribute`.
    """
    module_name, _, attribute = reference.partition(":")
    module = import_user_module(module_name, owner=f"engine '{reference}'", path=path)
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, Engine):
            raise ConfigError(f"engine '{reference}': '{attribute}' in {module_name} is not an aperture.engines.Engine")
        return found
    engines = {name: value for name, value in vars(module).items() if isinstance(value, Engine)}
    if len(engines) != 1:
        names = ", ".join(f"{module_name}:{n}" for n in engines) or "none"
        raise ConfigError(
            f"engine '{reference}': module {module_name} defines {len(engines)} Engine objects ({names}); "
            "name one as module:attribute"
        )
    return next(iter(engines.values()))


class EngineBackend:
    """One or more engines as a backend: their tools searchable and runnable next to everything else."""

    kind = "engine"

    def __init__(self, name: str, engines: Iterable[Engine]) -> None:
        ToolId(name, "x")  # validates the namespace, with a clear message
        self._name = name
        self._engines = list(engines)
        if not self._engines:
            raise ConfigError(f"backend '{name}': no engines given; list at least one module under 'engines'")
        seen: dict[str, Engine] = {}
        for engine in self._engines:
            engine.check()
            if engine.name in seen:
                raise ConfigError(f"backend '{name}': two engines are named '{engine.name}'; mount them separately")
            seen[engine.name] = engine
        prefixed = len(self._engines) > 1
        self._routes: dict[str, tuple[Engine, EngineTool]] = {}
        self._tools: dict[str, Tool] = {}
        for engine in self._engines:
            for tool in engine.tools.values():
                listed = f"{engine.name}.{tool.name}" if prefixed else tool.name
                self._routes[listed] = (engine, tool)
                self._tools[listed] = tool.to_tool(name, listed, kind=self.kind)

    @classmethod
    def from_modules(cls, name: str, references: Sequence[str], *, path: str | Path | None = None) -> EngineBackend:
        """Mount the engines that `module` or `module:attribute` references name."""
        return cls(name, [load_engine(reference, path=path) for reference in references])

    @property
    def name(self) -> str:
        return self._name

    @property
    def engines(self) -> Sequence[Engine]:
        return self._engines

    async def list_tools(self) -> Sequence[Tool]:
        return list(self._tools.values())

    async def get_tool(self, name: str) -> Tool | None:
        return self._tools.get(name)

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        route = self._routes.get(name)
        if route is None:
            raise UnknownToolError(f"{self._name}:{name}", [f"{self._name}:{n}" for n in self._routes])
        engine, tool = route
        # The runner has validated and coerced `args` against this tool's schema already.
        result = await engine.call(tool.name, args, ctx.progress, checked=True)
        return ToolOutput(
            content=(mcp_types.TextContent(text=result.text),), structured=result.structured, is_error=result.is_error
        )

    async def health(self) -> HealthStatus:
        names = ", ".join(f"{e.name} {e.version}" for e in self._engines)
        return HealthStatus(healthy=True, message=f"{len(self._tools)} tools from {names}")

    async def aclose(self) -> None:
        return None
