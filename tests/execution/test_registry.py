"""The backend registry: membership, the aggregated catalog, health and shutdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from aperture.execution import BackendRegistry, CallContext, HealthStatus, PythonBackend
from aperture.model import ConfigError, Tool, ToolId

pytestmark = pytest.mark.anyio


class FakeBackend:
    """A hand-written backend (no inheritance), misbehaving as told: a test double, named as such."""

    kind = "fake"

    def __init__(self, name: str, *, tools: int = 1, list_fails: bool = False, health_hangs: bool = False) -> None:
        self.name = name
        self.closed = False
        self._tools = [Tool(id=ToolId(name, f"t{i}")) for i in range(tools)]
        self._list_fails = list_fails
        self._health_hangs = health_hangs

    async def list_tools(self) -> Sequence[Tool]:
        if self._list_fails:
            raise ConnectionError("upstream refused")
        return self._tools

    async def get_tool(self, name: str) -> Tool | None:
        return next((t for t in self._tools if t.name == name), None)

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        return name

    async def health(self) -> HealthStatus:
        if self._health_hangs:
            await anyio.sleep_forever()
        return HealthStatus(healthy=True, message="fine")

    async def aclose(self) -> None:
        self.closed = True


async def test_register_get_list_and_find() -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("a", tools=2))
    await registry.register(FakeBackend("b"))
    assert registry.names() == ["a", "b"]
    assert registry.get("a") is not None and "b" in registry
    found = registry.find_tool("a:t1")
    assert found is not None and found[0].key == "a:t1" and found[1].name == "a"
    assert registry.find_tool("a:nope") is None
    tools, failures = await registry.list_all_tools()
    assert sorted(t.key for t in tools) == ["a:t0", "a:t1", "b:t0"] and failures == {}


async def test_duplicate_names_are_refused() -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("a"))
    with pytest.raises(ConfigError, match="already registered"):
        await registry.register(FakeBackend("a"))


async def test_a_failing_backend_is_skipped_and_reported() -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("good"))
    await registry.register(FakeBackend("bad", list_fails=True))
    tools, failures = await registry.list_all_tools()
    assert [t.key for t in tools] == ["good:t0"]
    assert failures == {"bad": "ConnectionError: upstream refused"}


async def test_unregister_closes_and_drops_tools() -> None:
    registry = BackendRegistry()
    backend = FakeBackend("a")
    await registry.register(backend)
    version = registry.snapshot.version
    await registry.unregister("a")
    assert backend.closed and registry.find_tool("a:t0") is None
    assert registry.snapshot.version > version
    with pytest.raises(KeyError):
        await registry.unregister("a")


async def test_health_check_runs_concurrently_with_a_timeout() -> None:
    registry = BackendRegistry()
    await registry.register(FakeBackend("ok"))
    await registry.register(FakeBackend("stuck", health_hangs=True))
    await registry.register(FakeBackend("stuck2", health_hangs=True))
    with anyio.fail_after(2):
        health = await registry.health_check(timeout=0.3)
    assert health["ok"].healthy and health["ok"].latency_ms >= 0
    assert not health["stuck"].healthy and "no answer within 0.3 s" in health["stuck"].message
    assert not health["stuck2"].healthy


async def test_close_all_closes_every_backend() -> None:
    registry = BackendRegistry()
    backends = [FakeBackend(n) for n in "abc"]
    for backend in backends:
        await registry.register(backend)
    await registry.aclose()
    assert all(b.closed for b in backends) and len(registry.snapshot) == 0


async def test_tools_added_while_running_reach_the_catalog() -> None:
    registry = BackendRegistry()
    backend = PythonBackend("live")

    @backend.tool
    def first() -> str:
        return "1"

    await registry.register(backend)
    seen = anyio.Event()
    registry.add_listener(lambda snap: seen.set() if "live:second" in snap.tools else None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(registry.watch_changes)

        @backend.tool
        def second() -> str:
            return "2"

        with anyio.fail_after(5):
            await seen.wait()
        tg.cancel_scope.cancel()
    assert registry.find_tool("live:second") is not None
    backend.remove_tool("first")
    await registry.refresh("live")
    assert registry.find_tool("live:first") is None
    await registry.aclose()


async def test_an_explicit_refresh_covers_a_change_reported_before_it() -> None:
    # `reload_capabilities` reloads, then refreshes at once; the backend's own change report must not make
    # the watcher list (and the gateway index) the same tools a second time.
    registry = BackendRegistry()
    backend = PythonBackend("live")

    @backend.tool
    def first() -> str:
        return "1"

    await registry.register(backend)
    published: list[int] = []
    registry.add_listener(lambda snap: published.append(snap.version))
    async with anyio.create_task_group() as tg:
        tg.start_soon(registry.watch_changes)

        @backend.tool
        def second() -> str:
            return "2"

        await registry.refresh("live")  # before the watcher's debounce runs out
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert len(published) == 1 and registry.find_tool("live:second") is not None
    await registry.aclose()
