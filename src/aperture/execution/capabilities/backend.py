"""The `capabilities` backend: REST endpoints described in YAML files become tools, reloaded when files change.

A reload reads the directories in a worker thread and swaps the new `CapabilitySet` in with one assignment, so
searches and calls never see half a set, and a call already running finishes on the definition it started with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import watchfiles

from aperture.execution.backend import CallContext, HealthStatus
from aperture.execution.capabilities.http import CapabilityExecutor, HttpSettings
from aperture.execution.capabilities.loader import SUFFIXES, CapabilityLoader, CapabilitySet, LoadReport
from aperture.execution.capabilities.netguard import capability_client
from aperture.execution.capabilities.spec import KIND
from aperture.execution.result import ToolOutput
from aperture.execution.watching import FileWatch
from aperture.model import Redactor, Tool, ToolId, UnknownToolError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapabilitySettings:
    """How a capabilities backend loads, watches and calls."""

    watch: bool = True
    debounce: float = 0.05
    """Seconds of quiet after a file change before the directories are read again."""
    allow_private_networks: bool = False
    http: HttpSettings = field(default_factory=HttpSettings)


def _is_capability_file(_change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    return not name.startswith(".") and (name.endswith(SUFFIXES) or "." not in name)


class CapabilityBackend:
    """Tools from capability files in `directories` (each `*.yaml` / `*.yml` below them).

    Example:
        ```python
        backend = CapabilityBackend("weather", [Path("capabilities")])
        async with anyio.create_task_group() as tg:
            await backend.start(tg)  # loads, then watches the directories
        ```
    """

    kind = KIND

    def __init__(
        self,
        name: str,
        directories: Sequence[Path | str],
        settings: CapabilitySettings | None = None,
        *,
        redactor: Redactor | None = None,
    ) -> None:
        ToolId(name, "x")  # validates the namespace, with a clear message
        self._name = name
        self._redactor = redactor
        self.settings = settings or CapabilitySettings()
        self.loader = CapabilityLoader(name, [Path(d) for d in directories])
        self._set = CapabilitySet()
        self._report: LoadReport | None = None
        self._listener: Callable[[str], None] | None = None
        self._lock = anyio.Lock()
        self._client = capability_client(allow_private_networks=self.settings.allow_private_networks)
        self.executor = CapabilityExecutor(self._client, self.settings.http)
        self._watch = FileWatch(
            f"capabilities {name}",
            self.loader.existing_directories,
            self.reload,
            debounce=self.settings.debounce,
            watch_filter=_is_capability_file,
        )
        self.reloads = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> CapabilitySet:
        """The current set (read it once per operation for a consistent view)."""
        return self._set

    @property
    def report(self) -> LoadReport | None:
        """What the last load found, problems included."""
        return self._report

    # --- loading and watching -------------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Load the directories, then watch them (when `watch` is on) in `task_group`."""
        await self.reload()
        if self.settings.watch:
            self._watch.start(task_group)

    def load_now(self) -> LoadReport:
        """Read the directories and swap the new set in, synchronously (for tools and tests)."""
        return self._swap(self.loader.load(self._set))

    async def reload(self) -> LoadReport:
        """Read the directories again (in a worker thread) and swap the new set in.

        Tells the registry when the set changed. Files that stopped loading keep their last good version.
        """
        async with self._lock:
            report = self._swap(await anyio.to_thread.run_sync(self.loader.load, self._set))
            self._watch.check_paths()  # a directory may have appeared or vanished
        return report

    def _swap(self, report: LoadReport) -> LoadReport:
        old, self._set, self._report = self._set, report.capabilities, report
        if self._redactor is not None:
            self._redactor.add(self.secret_values())
        self.reloads += 1
        changed = old.tools != report.capabilities.tools
        logger.info("capabilities %s: %s", self._name, report.summary())
        if changed and self._listener is not None:
            self._listener(self._name)
        return report

    def secret_values(self) -> list[str]:
        """The credentials the current capabilities send: the values of the environment variables their `auth` and
        their `{env.VAR}` headers and query parameters (in `params` or in the URL's query) name."""
        names = set()
        for capability in self._set.by_name.values():
            if capability.auth is not None:
                names.add(capability.auth.env)
            for provider in capability.providers:
                names.update(provider.url.query_env_names)
                for _, template in (*provider.headers, *provider.params):
                    names.update(template.env_names)
        return [value for name in sorted(names) if (value := os.environ.get(name))]

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    # --- the Backend protocol -------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        if self._report is None:
            await self.reload()
        return self._set.tools

    async def get_tool(self, name: str) -> Tool | None:
        capability = self._set.get(name)
        return capability.tool if capability else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ToolOutput:
        capability = self._set.get(name)  # this definition serves the whole call, whatever reloads meanwhile
        if capability is None:
            raise UnknownToolError(f"{self._name}:{name}", [f"{self._name}:{n}" for n in list(self._set.by_name)[:3]])
        return await self.executor.execute(capability, args)

    async def health(self) -> HealthStatus:
        report = self._report
        if report is None:
            return HealthStatus(healthy=True, message="not loaded yet")
        return HealthStatus(healthy=True, message=report.summary())

    async def aclose(self) -> None:
        self._listener = None
        self._watch.close()
        await self._client.aclose()
