"""What an upstream sends back during a call reaches only the client that made that call.

Two (or three) clients call the same upstream, over stdio and over streamable HTTP, with their calls
overlapping. The upstream is the fixture server, a real process; the clients are the official MCP client (in
memory) on the gateway. Gates (files the test creates) fix the order of events, so nothing waits on time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from mcp import Client

from aperture.config import parse_config
from aperture.execution import McpBackend
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES
from tests.integration.conftest import free_port, wait_for_port
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio

SERVER = str(FIXTURES / "upstream_server.py")
TRANSPORTS = ["stdio", "http"]


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The fixture server over streamable HTTP, for the whole module."""
    port = free_port()
    process = subprocess.Popen([sys.executable, SERVER, "--http", str(port)])
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)


def spec(transport: str, http_url: str, **extra: Any) -> dict[str, Any]:
    transport, _, isolation = transport.partition("-")
    if isolation:
        extra["isolation"] = isolation
    if transport == "http":
        return {"name": "up", "kind": "mcp", "url": http_url, **extra}
    return {"name": "up", "kind": "mcp", "command": [sys.executable, SERVER], **extra}


def reached(*gates: Path) -> Any:
    """A condition: every call waiting at one of these gates has reached it (the upstream is handling it)."""
    return lambda: all(Path(f"{gate}.reached").exists() for gate in gates)


def dropped(backend: McpBackend, kind: str) -> int:
    # 0 from a backend without the counter (before issue 17): a test then fails on what reached the clients.
    return int(getattr(backend, "unrouted", {}).get(kind, 0))


@dataclass
class Agent:
    """One client of the gateway and what reached it."""

    name: str
    client: Client | None = None
    asked: list[str] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    asked_once: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event | None = None
    """When set, the first question waits for it before answering (keeps this client's call in flight)."""

    async def on_sampling(self, context: Any, params: mcp_types.CreateMessageRequestParams) -> Any:
        await self._asked(params.messages[0].content.text)  # type: ignore[union-attr]
        return mcp_types.CreateMessageResult(
            role="assistant", content=mcp_types.TextContent(text=f"{self.name}-model"), model="test"
        )

    async def on_elicitation(self, context: Any, params: Any) -> mcp_types.ElicitResult:
        await self._asked(params.message)
        return mcp_types.ElicitResult(action="accept", content={"name": f"{self.name}-user"})

    async def _asked(self, question: str) -> None:
        self.asked.append(question)
        self.asked_once.set()
        if self.release is not None and len(self.asked) == 1:
            await self.release.wait()

    async def on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params.data)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(progress)


@asynccontextmanager
async def agents(config: dict[str, Any], *names: str) -> AsyncIterator[tuple[Gateway, list[Agent]]]:
    """A gateway on `config`, and one connected client per name."""
    async with Gateway(parse_config(config)) as gw:
        surface = McpSurface(gw)
        found = [Agent(name) for name in names]
        async with anyio.create_task_group() as tg:
            connected = anyio.Event()
            done = anyio.Event()

            async def connect(index: int) -> None:
                agent = found[index]
                async with Client(
                    surface.server,
                    mode="legacy",
                    logging_callback=agent.on_log,
                    sampling_callback=agent.on_sampling,
                    elicitation_callback=agent.on_elicitation,
                ) as client:
                    agent.client = client
                    if all(a.client is not None for a in found):
                        connected.set()
                    await done.wait()

            for i in range(len(found)):
                tg.start_soon(connect, i)
            with anyio.fail_after(10):
                await connected.wait()
            try:
                yield gw, found
            finally:
                done.set()


def upstream_of(gw: Gateway) -> McpBackend:
    backend = gw.registry.get("up")
    assert isinstance(backend, McpBackend)
    return backend


async def until(condition: Any, seconds: float = 10) -> None:
    """Wait for `condition()` to hold (it is state another task changes), failing after `seconds`."""
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def client_of(agent: Agent) -> Client:
    assert agent.client is not None
    return agent.client


ASKS = {
    "sampling": ("sample", "prompt", "model said: {}-model"),
    "elicitation": ("elicit", "question", "user said: {}-user"),
}


ISOLATED = [*TRANSPORTS, "stdio-per_client", "http-per_client"]


@pytest.mark.parametrize("kind", list(ASKS), ids=list(ASKS))
@pytest.mark.parametrize("transport", ISOLATED, ids=ISOLATED)
async def test_a_request_sent_back_during_a_call_reaches_only_its_caller(
    transport: str, kind: str, http_url: str, tmp_path: Path
) -> None:
    # A's call starts first and asks late (at the gate); B's call starts later and is still in flight when
    # A's question comes: "the latest caller" would be B. Over HTTP the question rides A's own stream, so
    # A is asked; over stdio nothing says whose it is, so with calls overlapping both questions are refused.
    # With `isolation: per_client` each client has a session of its own: each is asked its own question.
    tool, argument, answer = ASKS[kind]
    gate = tmp_path / "gate"
    results: dict[str, mcp_types.CallToolResult] = {}
    config = {"backends": [spec(transport, http_url)], "execution": {"timeout": 20}}
    async with agents(config, "a", "b") as (gw, (a, b)):
        upstream = upstream_of(gw)
        b.release = anyio.Event()
        b_settled = anyio.Event()

        async def call(agent: Agent, args: dict[str, Any], settled: anyio.Event | None = None) -> None:
            results[agent.name] = await run(client_of(agent), f"up:{tool}", args)
            if settled is not None:
                settled.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, a, {argument: "for a", "gate": str(gate)})
                await until(reached(gate))
                tg.start_soon(call, b, {argument: "for b"}, b_settled)
                async with anyio.create_task_group() as either:  # B was asked (and waits), or was refused

                    async def on(event: anyio.Event) -> None:
                        await event.wait()
                        either.cancel_scope.cancel()

                    either.start_soon(on, b.asked_once)
                    either.start_soon(on, b_settled)
                gate.touch()
                await until(lambda: "a" in results)
                b.release.set()
    assert "for a" not in b.asked and "for b" not in a.asked
    if transport != "stdio":
        assert a.asked == ["for a"] and b.asked == ["for b"]
        assert text_of(results["a"]) == answer.format("a") and text_of(results["b"]) == answer.format("b")
    else:
        assert a.asked == b.asked == []
        for name in ("a", "b"):
            assert results[name].is_error
            message = text_of(results[name])
            assert f"{kind} refused" in message and "isolation: per_client" in message, message
        assert upstream.unrouted == {kind: 2}


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORTS)
async def test_a_request_sent_back_during_the_only_call_reaches_its_caller(transport: str, http_url: str) -> None:
    config = {"backends": [spec(transport, http_url)], "execution": {"timeout": 20}}
    async with agents(config, "a", "b") as (gw, (a, b)):
        upstream = upstream_of(gw)
        result = await run(client_of(a), "up:sample", {"prompt": "alone"})
        assert text_of(result) == "model said: a-model"
        result = await run(client_of(b), "up:elicit", {"question": "alone too"})
        assert text_of(result) == "user said: b-user"
    assert a.asked == ["alone"] and b.asked == ["alone too"]
    assert upstream.unrouted == {}


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORTS)
async def test_log_messages_after_a_call_ended_reach_no_other_client(
    transport: str, http_url: str, tmp_path: Path
) -> None:
    # A's call answers at once; its 20 log messages come later, while B's and C's calls are in flight.
    # They belong to no call in flight: they go nowhere and are counted, never to B or C.
    logs_gate, hold_gate, held_too = tmp_path / "logs", tmp_path / "hold", tmp_path / "hold too"
    config = {"backends": [spec(transport, http_url)], "execution": {"timeout": 20}}
    async with agents(config, "a", "b", "c") as (gw, (a, b, c)):
        upstream = upstream_of(gw)
        args = {"message": "from a", "count": 20, "gate": str(logs_gate)}
        assert text_of(await run(client_of(a), "up:log_later", args)) == "will log"
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for agent, gate in ((b, hold_gate), (c, held_too)):
                    tg.start_soon(run, client_of(agent), "up:hold", {"gate": str(gate)})
                await until(reached(hold_gate, held_too))
                logs_gate.touch()
                await until(lambda: dropped(upstream, "log") + len(b.logs) + len(c.logs) >= 20)
                hold_gate.touch()
                held_too.touch()
    assert a.logs == b.logs == c.logs == []
    assert upstream.unrouted == {"log": 20}


async def test_stdio_log_messages_of_overlapping_calls_reach_no_other_client(http_url: str, tmp_path: Path) -> None:
    # On stdio a log message names no request: with two clients' calls in flight, neither gets it (before,
    # both got both); a later call that runs alone gets its own messages again.
    config = {"backends": [spec("stdio", http_url)], "ops": {"observe": {"enabled": True}}}
    gates = [tmp_path / "a", tmp_path / "b"]
    async with agents(config, "a", "b", "alone") as (gw, (a, b, alone)):
        async with anyio.create_task_group() as tg:
            for agent, gate in zip((a, b), gates, strict=True):
                tg.start_soon(run, client_of(agent), "up:log", {"message": f"for {agent.name}", "gate": str(gate)})
            await until(reached(*gates))  # both calls in flight: then both log
            for gate in gates:
                gate.touch()
        await until(lambda: dropped(upstream_of(gw), "log") + len(a.logs) + len(b.logs) >= 2)
        assert a.logs == b.logs == []
        assert text_of(await run(client_of(alone), "up:log", {"message": "alone"})) == "logged"
        await until(lambda: bool(alone.logs))
        assert upstream_of(gw).unrouted == {"log": 2}
        assert "matched no call (dropped): log 2" in (await upstream_of(gw).health()).message
        metrics = gw.ops.telemetry.prometheus_text().decode()
        assert 'upstream_messages_unrouted_total{backend="up",kind="log"} 2.0' in metrics, metrics
    assert a.logs == b.logs == []
    assert alone.logs == ["alone"]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORTS)
async def test_progress_of_overlapping_calls_reaches_only_its_caller(transport: str, http_url: str) -> None:
    config = {"backends": [spec(transport, http_url)]}
    async with agents(config, "a", "b") as (_, (a, b)):

        async def slow(agent: Agent, steps: int) -> None:
            args = {"tool_id": "up:slow", "args": {"steps": steps}}
            result = await client_of(agent).call_tool("run_tool", args, progress_callback=agent.on_progress)
            assert text_of(result) == f"done after {steps} steps"

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow, a, 3)
            tg.start_soon(slow, b, 5)
    assert a.progress == [1, 2, 3] and b.progress == [1, 2, 3, 4, 5]


async def test_per_client_isolation_gives_each_client_a_session_of_its_own(http_url: str, tmp_path: Path) -> None:
    gates = [tmp_path / "gate a", tmp_path / "gate b"]
    config = {"backends": [spec("stdio-per_client", http_url, client_sessions=2, client_idle_timeout=4)]}
    async with agents(config, "a", "b", "c") as (gw, (a, b, c)):
        upstream = upstream_of(gw)
        clients = upstream._clients
        assert clients is not None
        for agent in (a, b, a):
            assert text_of(await run(client_of(agent), "up:echo", {"text": agent.name})) == agent.name
        pids = {lease.session._watch.pid for lease in clients._leases.values()}  # type: ignore[attr-defined]
        assert len(clients) == 2 and len(pids) == 2 and upstream._watch.pid not in pids  # type: ignore[union-attr]
        assert "2 per-client sessions" in (await upstream.health()).message
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for agent, gate in zip((a, b), gates, strict=True):
                    tg.start_soon(run, client_of(agent), "up:hold", {"gate": str(gate)})
                await until(reached(*gates))
                refused = await run(client_of(c), "up:echo", {"text": "c"})  # both sessions busy: no room
                for gate in gates:
                    gate.touch()
        assert refused.is_error and "already runs 2 per-client sessions" in text_of(refused)
        assert text_of(await run(client_of(c), "up:echo", {"text": "c"})) == "c"  # an idle one made room
        await until(lambda: len(clients) == 0, 20)  # idle for longer than client_idle_timeout: closed
        assert text_of(await run(client_of(a), "up:echo", {"text": "again"})) == "again"


async def test_per_client_isolation_puts_questions_of_one_clients_overlapping_calls_to_that_client(
    http_url: str, tmp_path: Path
) -> None:
    gates = [tmp_path / "first", tmp_path / "second"]
    results: list[str] = []
    config = {"backends": [spec("stdio-per_client", http_url)], "execution": {"timeout": 20}}
    async with agents(config, "a", "b") as (_, (a, b)):

        async def sample(gate: Path) -> None:
            results.append(text_of(await run(client_of(a), "up:sample", {"prompt": gate.name, "gate": str(gate)})))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for gate in gates:
                    tg.start_soon(sample, gate)
                await until(reached(*gates))  # both of A's calls in flight on A's own session
                for gate in gates:
                    gate.touch()
    assert results == ["model said: a-model"] * 2
    assert sorted(a.asked) == ["first", "second"] and b.asked == []
