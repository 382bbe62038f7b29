"""The backend registry: every backend by name, and one consistent snapshot of all their tools."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import anyio

from aperture.execution.backend import Backend, ChangeNotifier, HealthStatus
from aperture.execution.integrity import HeldTool, IntegrityGuard
from aperture.execution.namespaces import NamespaceDescriptions
from aperture.model import ApertureError, ConfigError, Tool

logger = logging.getLogger(__name__)

DEFAULT_HEALTH_TIMEOUT = 5.0
ChangeListener = Callable[["CatalogSnapshot"], None]


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """All tools of all backends at one moment. Immutable: a change builds a new snapshot.

    Attributes:
        version: grows by one with each change; cursors and caches key on it.
        tools: `namespace:name` -> tool.
        by_backend: backend name -> its tools, in the backend's order.
        failures: backend name -> why listing its tools failed (those backends contribute no tools).
        held: `namespace:name` -> a tool kept out because its definition changed (see `integrity`).
    """

    version: int = 0
    tools: Mapping[str, Tool] = field(default_factory=dict)
    by_backend: Mapping[str, tuple[Tool, ...]] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)
    held: Mapping[str, HeldTool] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)


class BackendRegistry:
    """Backends by name, plus the aggregated catalog of their tools.

    The catalog is refreshed when a backend is registered or unregistered and when a backend reports
    that its tools changed. Readers get the current `snapshot`, which never changes under them.
    """

    def __init__(self, guard: IntegrityGuard | None = None) -> None:
        self.guard = guard
        self.namespaces = NamespaceDescriptions()
        """Sets the namespace text of every listed tool (the gateway gives it the configured descriptions)."""
        self._backends: dict[str, Backend] = {}
        self._listed: dict[str, tuple[Tool, ...]] = {}
        self._failures: dict[str, str] = {}
        self._snapshot = CatalogSnapshot()
        self._listeners: list[ChangeListener] = []
        self._lock = anyio.Lock()
        self._changed: set[str] = set()
        self._wakeup: anyio.Event | None = None

    # --- membership -----------------------------------------------------------------------------

    async def register(self, backend: Backend) -> None:
        """Add a backend and list its tools. A backend whose listing fails stays registered, without tools.

        Raises:
            ConfigError: when a backend of that name is already registered.
        """
        if backend.name in self._backends:
            raise ConfigError(
                f"A backend named '{backend.name}' is already registered; give each backend its own name."
            )
        self._backends[backend.name] = backend
        if isinstance(backend, ChangeNotifier):
            backend.set_change_listener(self._on_backend_changed)
        await self.refresh(backend.name)

    async def unregister(self, name: str) -> None:
        """Remove a backend, closing it, and drop its tools from the catalog.

        Raises:
            KeyError: when no backend has that name.
        """
        backend = self._backends.pop(name)
        self._listed.pop(name, None)
        self._failures.pop(name, None)
        try:
            await backend.aclose()
        finally:
            self._publish()

    def get(self, name: str) -> Backend | None:
        return self._backends.get(name)

    def names(self) -> list[str]:
        return list(self._backends)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    # --- the catalog ----------------------------------------------------------------------------

    @property
    def snapshot(self) -> CatalogSnapshot:
        """The current catalog: read it once per operation for a consistent view."""
        return self._snapshot

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener(snapshot)` after every catalog change."""
        self._listeners.append(listener)

    def republish(self) -> None:
        """Publish the catalog again (after approvals change what the guard holds back)."""
        self._publish()

    async def refresh(self, name: str | None = None) -> CatalogSnapshot:
        """Re-list the tools of one backend (or all, concurrently) and publish a new snapshot."""
        names = [name] if name is not None else list(self._backends)
        async with self._lock:
            # A change reported before this listing starts is covered by it: no second listing for it later.
            self._changed.difference_update(names)
            async with anyio.create_task_group() as tg:
                for backend_name in names:
                    tg.start_soon(self._list_one, backend_name)
            self._publish()
        return self._snapshot

    async def list_all_tools(self) -> tuple[list[Tool], dict[str, str]]:
        """List every backend's tools now; a failing backend is skipped and reported, never hides the others."""
        snapshot = await self.refresh()
        return list(snapshot.tools.values()), dict(snapshot.failures)

    def find_tool(self, key: str) -> tuple[Tool, Backend] | None:
        """The tool with id `namespace:name` and its backend, or None."""
        tool = self._snapshot.tools.get(key)
        if tool is None:
            return None
        backend = self._backends.get(tool.namespace)
        return (tool, backend) if backend is not None else None

    async def _list_one(self, name: str) -> None:
        backend = self._backends.get(name)
        if backend is None:
            return
        try:
            tools = self.namespaces.said(await backend.list_tools())
        except Exception as exc:  # a broken backend is reported, never allowed to hide the others
            logger.warning("backend %s: listing tools failed: %s", name, exc)
            self._listed[name] = ()
            self._failures[name] = exc.message if isinstance(exc, ApertureError) else f"{type(exc).__name__}: {exc}"
            return
        self._listed[name] = tools
        self._failures.pop(name, None)
        logger.info("backend %s ready: %d tools", name, len(tools))

    def _publish(self) -> None:
        tools: dict[str, Tool] = {}
        for backend_name, listed in self._listed.items():
            for tool in listed:
                if tool.namespace != backend_name:
                    logger.warning("backend %s offered tool %s outside its namespace; skipped", backend_name, tool.key)
                    continue
                tools[tool.key] = tool
        held: dict[str, HeldTool] = {}
        if self.guard is not None:
            served, held = self.guard.check(tools.values())
            tools = {tool.key: tool for tool in served}
        if self.namespaces.configured:  # after the check: the operator's own words are not pinned
            tools = self.namespaces.served(tools)
        self._snapshot = CatalogSnapshot(
            version=self._snapshot.version + 1,
            tools=MappingProxyType(tools),
            by_backend=MappingProxyType(dict(self._listed)),
            failures=MappingProxyType(dict(self._failures)),
            held=MappingProxyType(held),
        )
        for listener in self._listeners:
            try:
                listener(self._snapshot)
            except Exception:
                logger.exception("catalog listener failed")

    def _on_backend_changed(self, name: str) -> None:
        """A backend says its tools changed; `watch_changes` re-lists it (or a later `refresh`)."""
        self._changed.add(name)
        if self._wakeup is not None:
            self._wakeup.set()

    async def watch_changes(self, *, debounce: float = 0.05) -> None:
        """Re-list backends that reported a change, coalescing bursts; run this in the owner's task group."""
        while True:
            self._wakeup = anyio.Event()
            if not self._changed:
                await self._wakeup.wait()
            await anyio.sleep(debounce)
            names, self._changed = self._changed, set()
            for name in names:
                await self.refresh(name)

    # --- health and shutdown --------------------------------------------------------------------

    async def health_check(self, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> dict[str, HealthStatus]:
        """Check every backend concurrently; one that does not answer within `timeout` is unhealthy."""
        results: dict[str, HealthStatus] = {}

        async def check(name: str, backend: Backend) -> None:
            started = time.perf_counter()
            try:
                with anyio.fail_after(timeout):
                    status = await backend.health()
            except TimeoutError:
                status = HealthStatus(healthy=False, message=f"no answer within {timeout:g} s")
            except Exception as exc:
                status = HealthStatus(healthy=False, message=f"{type(exc).__name__}: {exc}")
            if not status.latency_ms:
                elapsed = (time.perf_counter() - started) * 1000
                status = HealthStatus(
                    healthy=status.healthy, message=status.message, checked_at=status.checked_at, latency_ms=elapsed
                )
            results[name] = status

        async with anyio.create_task_group() as tg:
            for name, backend in list(self._backends.items()):
                tg.start_soon(check, name, backend)
        return {name: results[name] for name in self._backends if name in results}

    async def aclose(self) -> None:
        """Close every backend; errors are logged, and every backend gets its chance to close."""
        backends, self._backends = self._backends, {}
        self._listed.clear()
        self._failures.clear()
        for name, backend in backends.items():
            try:
                await backend.aclose()
            except Exception:
                logger.exception("closing backend %s failed", name)
        self._publish()
