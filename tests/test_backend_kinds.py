"""Backend kinds as a registry: a kind is one module (configuration model and factory) and one registry entry,
and the configuration, the gateway's build and start, and search's marking of down backends all follow from it.

The kind here (`beacon`) is a test's own: a tiny backend whose tools come from its configuration and that is
up or down as the test says. It is registered for one test and removed after.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import anyio.abc
import pytest
from pydantic import Field

from aperture.config import (
    BackendKind,
    BackendSettings,
    BuildContext,
    backend_kinds,
    parse_config,
    register_kind,
    unregister_kind,
)
from aperture.execution import (
    Availability,
    CallContext,
    CompletionSource,
    HealthStatus,
    McpBackend,
    PromptSource,
    PythonBackend,
    Startable,
    StdioTarget,
)
from aperture.gateway import Gateway
from aperture.gateway.core import build_backend
from aperture.model import BackendUnavailableError, ConfigError, Tool, ToolId

pytestmark = pytest.mark.anyio

BUILTIN = ("python", "mcp", "capabilities", "engine", "grpc", "a2a")


# --- the test's kind: one model, one factory, one entry ----------------------------------------------------------


class BeaconConfig(BackendSettings):
    """Beacons whose signals can be read, one tool each."""

    kind: Literal["beacon"]
    beacons: list[str] = Field(min_length=1, description="Names of the beacons.")
    timeout: float | None = Field(None, gt=0)


class Beacon:
    """A backend with one tool per beacon; `down` (a reason) makes it unavailable."""

    kind = "beacon"

    def __init__(self, name: str, beacons: Sequence[str]) -> None:
        self._name = name
        self.beacons = list(beacons)
        self.down: str | None = None
        self.started_in: anyio.abc.TaskGroup | None = None

    @property
    def name(self) -> str:
        return self._name

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        self.started_in = task_group

    def down_reason(self) -> str | None:
        return self.down

    def _tool(self, beacon: str) -> Tool:
        return Tool(
            id=ToolId(self._name, beacon),
            description=f"Read the signal of the {beacon} lighthouse beacon.",
            backend_kind=self.kind,
        )

    async def list_tools(self) -> Sequence[Tool]:
        return [self._tool(b) for b in self.beacons]

    async def get_tool(self, name: str) -> Tool | None:
        return self._tool(name) if name in self.beacons else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        if self.down is not None:
            raise BackendUnavailableError(f"Backend '{self._name}' is unavailable: {self.down}.")
        return f"{name}: steady green"

    async def health(self) -> HealthStatus:
        return HealthStatus(healthy=self.down is None, message=self.down or "")

    async def aclose(self) -> None:
        pass


def build_beacon(spec: BeaconConfig, context: BuildContext) -> Beacon:
    return Beacon(spec.name, spec.beacons)


BEACON = BackendKind("beacon", BeaconConfig, build_beacon)


@pytest.fixture
def beacon_kind() -> Iterator[BackendKind[BeaconConfig]]:
    register_kind(BEACON)
    try:
        yield BEACON
    finally:
        unregister_kind("beacon")


def beacons_config(**backend: Any) -> dict[str, Any]:
    entry = {"name": "coast", "kind": "beacon", "beacons": ["lizard", "eddystone"], **backend}
    return {"search": {"strategy": "bm25"}, "backends": [entry]}


# --- the whole path for a new kind ---------------------------------------------------------------------------------


async def test_a_kind_in_one_module_and_one_entry_is_configured_built_started_and_marked_down(
    beacon_kind: BackendKind[BeaconConfig],
) -> None:
    assert backend_kinds() == (*BUILTIN, "beacon")
    config = parse_config(beacons_config(timeout=4))
    (spec,) = config.backends
    assert isinstance(spec, BeaconConfig) and spec.beacons == ["lizard", "eddystone"] and spec.timeout == 4
    # Its own model's rules, with the entry's place in the file.
    with pytest.raises(ConfigError, match=r"backends\[0\]\.beacons: List should have at least 1 item"):
        parse_config(beacons_config(beacons=[]))
    with pytest.raises(ConfigError, match=r"backends\[0\]\.colour: unknown key"):
        parse_config(beacons_config(colour="red"))

    async with Gateway(config) as gateway:
        backend = gateway.registry.get("coast")
        assert isinstance(backend, Beacon)
        assert backend.started_in is not None  # started, as every Startable backend is
        top = gateway.search("lighthouse beacon signal lizard")["tools"][0]
        assert top["id"] == "coast:lizard" and top.get("available", True)
        assert (await gateway.run("coast:lizard", {})).text == "lizard: steady green"

        backend.down = "the coastguard radio is off"  # an Availability backend says it is down ...
        found = gateway.search("lighthouse beacon signal lizard")["tools"][0]
        assert found["id"] == "coast:lizard" and found["available"] is False  # ... and search marks its tools
        assert "backend 'coast' is down (the coastguard radio is off)" in found["unavailable_reason"]
        assert gateway.unavailable() == {
            "coast": "backend 'coast' is down (the coastguard radio is off); retry later or use another tool"
        }
        failed = await gateway.run("coast:eddystone", {})
        assert failed.is_error and "coastguard radio is off" in failed.text

        backend.down = None
        assert gateway.search("lighthouse beacon signal eddystone")["tools"][0].get("available", True)
        assert gateway.unavailable() == {}


async def test_a_kind_taken_away_is_refused_by_the_configuration_and_by_build_backend(
    beacon_kind: BackendKind[BeaconConfig],
) -> None:
    config = parse_config(beacons_config())
    unregister_kind("beacon")
    try:
        with pytest.raises(ConfigError, match=r"unknown backend kind 'beacon'; the kinds are 'python', 'mcp'"):
            parse_config(beacons_config())
        # Never a silent fall-through to another kind (MCP, as it once was).
        with pytest.raises(ConfigError, match=r"unknown backend kind 'beacon'; the kinds are: python, mcp, "):
            build_backend(config.backends[0], config)
    finally:
        register_kind(beacon_kind)  # (the fixture removes it)


# --- kinds: errors ----------------------------------------------------------------------------------------------------


def test_an_unknown_or_missing_kind_is_a_config_error_listing_the_kinds() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"backends": [{"name": "a", "kind": "telepathy"}]})
    assert caught.value.message == (
        "<config>: invalid configuration:\n  backends[0]: unknown backend kind 'telepathy'; the kinds are "
        "'python', 'mcp', 'capabilities', 'engine', 'grpc', 'a2a' (see docs/configuration.md)"
    )
    with pytest.raises(ConfigError, match=r"backends\[0\]: give 'kind': the kind of backend, one of 'python', "):
        parse_config({"backends": [{"name": "a", "command": "server"}]})
    with pytest.raises(ConfigError, match=r"backends\[1\]: unknown backend kind 'soap'"):
        parse_config({"backends": [{"name": "a", "kind": "python", "module": "m"}, {"name": "b", "kind": "soap"}]})


def test_a_kind_is_registered_only_with_a_model_that_names_it() -> None:
    class Untagged(BackendSettings):
        timeout: float | None = None

    with pytest.raises(ValueError, match=r"Untagged must declare kind: Literal\['untagged'\]"):
        register_kind(BackendKind("untagged", Untagged, build_beacon))

    class OtherMcp(BackendSettings):
        kind: Literal["mcp"]
        timeout: float | None = None

    with pytest.raises(ValueError, match=r"backend kind 'mcp' is already registered \(with McpBackendConfig\)"):
        register_kind(BackendKind("mcp", OtherMcp, build_beacon))
    with pytest.raises(ValueError, match="must declare kind: Literal"):
        register_kind(BackendKind("lighthouse", BeaconConfig, build_beacon))
    with pytest.raises(ValueError, match=r"no backend kind 'nothing' is registered; the kinds are: python, mcp"):
        unregister_kind("nothing")
    assert backend_kinds() == BUILTIN


# --- what the gateway asks of a backend, structurally -----------------------------------------------------------------


def test_the_gateway_asks_backends_by_protocol_not_by_class() -> None:
    upstream = McpBackend("up", StdioTarget(command="/nonexistent/server"))
    assert all(isinstance(upstream, p) for p in (Startable, Availability, PromptSource, CompletionSource))
    assert upstream.down_reason() is None  # starting is not down
    plain = PythonBackend("plain", [])
    assert not any(isinstance(plain, p) for p in (Startable, Availability, PromptSource, CompletionSource))
    beacon = Beacon("coast", ["lizard"])
    assert isinstance(beacon, Startable) and isinstance(beacon, Availability)
    assert not isinstance(beacon, PromptSource)
