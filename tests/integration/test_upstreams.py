"""Real upstream MCP servers behind the gateway: the project's fixture server and mcp-server-time.

The agent side is the official MCP client (in memory) on the gateway; every upstream is a real process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import mcp_types
import pytest
from mcp import Client

from aperture.config import parse_config
from aperture.execution import McpBackend, UpstreamState
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface
from tests.conftest import FIXTURES
from tests.integration.conftest import free_port, wait_for_port
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

SERVER = str(FIXTURES / "upstream_server.py")
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")


def upstream(name: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "mcp", "command": [sys.executable, SERVER, *args], **extra}


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    config = parse_config(
        {
            "backends": [
                upstream("up", "--tools", "120", "--page-size", "25"),
                upstream("twin"),
                {"name": "time", "kind": "mcp", "command": TIME_SERVER, "args": ["--local-timezone", "UTC"]},
            ],
            "execution": {"timeout": 5},
        }
    )
    async with Gateway(config) as gw:
        yield gw


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[Client]:
    async with Client(McpSurface(gateway).server, mode="legacy") as c:
        yield c


def backend(gateway: Gateway, name: str) -> McpBackend:
    found = gateway.registry.get(name)
    assert isinstance(found, McpBackend)
    return found


async def test_tools_of_every_page_are_listed_and_searchable(client: Client, gateway: Gateway) -> None:
    namespaces = (await client.call_tool("list_tools", {"namespace": "up", "limit": 100})).structured_content
    assert namespaces["total"] == 17 + 120  # the fixture's own tools, and the extra ones on later pages
    found = (await client.call_tool("search_tools", {"query": "one pixel png image"})).structured_content
    assert found["tools"][0]["id"] in ("up:image", "twin:image")


async def test_same_tool_name_in_two_upstreams_stays_apart(client: Client) -> None:
    assert text_of(await run(client, "up:echo", {"text": "from up"})) == "from up"
    assert text_of(await run(client, "twin:echo", {"text": "from twin"})) == "from twin"


async def test_content_types_pass_through_unchanged(client: Client) -> None:
    image = await run(client, "up:image")
    assert isinstance(image.content[0], mcp_types.ImageContent) and image.content[0].mime_type == "image/png"
    audio = await run(client, "up:audio")
    assert isinstance(audio.content[0], mcp_types.AudioContent)
    resources = await run(client, "up:resources")
    embedded, link = resources.content
    assert isinstance(embedded, mcp_types.EmbeddedResource) and isinstance(link, mcp_types.ResourceLink)
    assert embedded.resource.uri == "memo://one" and link.uri == "memo://two"
    structured = await run(client, "up:add", {"a": "2", "b": 3})
    assert structured.structured_content["result"] == {"sum": 5}
    failed = await run(client, "up:fail")
    assert failed.is_error and text_of(failed) == "this tool failed on purpose"


async def test_progress_is_forwarded_to_the_agent(client: Client) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    result = await client.call_tool(
        "run_tool", {"tool_id": "up:slow", "args": {"steps": 4}}, progress_callback=on_progress
    )
    assert text_of(result) == "done after 4 steps"
    assert seen == [1, 2, 3, 4]


async def test_cancellation_reaches_the_upstream(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with anyio.move_on_after(1):
        await run(client, "up:wait_for_cancel", {"marker": str(marker)})
    with anyio.fail_after(5):
        while not marker.exists():
            await anyio.sleep(0.02)
    assert text_of(await run(client, "up:echo", {"text": "alive"})) == "alive"


async def test_many_concurrent_calls_share_one_process(client: Client, gateway: Gateway) -> None:
    pid = backend(gateway, "up")._watch.pid  # type: ignore[union-attr]
    results: list[str] = []

    async def one(i: int) -> None:
        results.append(text_of(await run(client, "up:echo", {"text": str(i)})))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    assert sorted(results, key=int) == [str(i) for i in range(50)]
    assert backend(gateway, "up")._watch.pid == pid  # type: ignore[union-attr]


async def test_a_hanging_call_times_out_and_the_upstream_keeps_serving(client: Client) -> None:
    with anyio.fail_after(10):
        error = error_of(await run(client, "up:hang"))
    assert error["code"] == "timeout" and error["backend_kind"] == "mcp"
    assert text_of(await run(client, "up:echo", {"text": "still"})) == "still"


async def test_a_crash_fails_the_call_at_once_and_the_upstream_restarts(client: Client, gateway: Gateway) -> None:
    with anyio.fail_after(5):
        error = error_of(await run(client, "up:crash"))
    assert error["code"] == "backend_unavailable" and error["retryable"]
    assert "exited with code 3" in error["message"] and "fatal: crash requested" in error["message"]
    assert text_of(await run(client, "twin:echo", {"text": "others fine"})) == "others fine"
    up = backend(gateway, "up")
    with anyio.fail_after(10):
        while up.state is not UpstreamState.READY:
            await anyio.sleep(0.05)
    assert up.restarts == 1
    assert text_of(await run(client, "up:echo", {"text": "back"})) == "back"


async def test_a_changed_tool_list_is_followed(client: Client, gateway: Gateway) -> None:
    await run(client, "twin:add_tool", {"name": "fresh"})
    with anyio.fail_after(5):
        while gateway.index.get("twin:extra_fresh") is None:
            await anyio.sleep(0.02)
    assert text_of(await run(client, "twin:extra_fresh", {})) == "extra_fresh"


async def test_health_pings_each_upstream(client: Client) -> None:
    namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
    assert {n["namespace"]: n["healthy"] for n in namespaces} == {"up": True, "twin": True, "time": True}, namespaces


async def test_mcp_server_time_from_pypi(client: Client) -> None:
    found = (await client.call_tool("search_tools", {"query": "current time in a timezone"})).structured_content
    assert "time:get_current_time" in [t["id"] for t in found["tools"]]
    result = await run(client, "time:get_current_time", {"timezone": "Europe/Paris"})
    assert not result.is_error and "Europe/Paris" in text_of(result)
    bad = await run(client, "time:get_current_time", {"timezone": "Mars/Olympus"})
    assert bad.is_error


async def test_no_upstream_process_outlives_the_gateway() -> None:
    config = parse_config({"backends": [upstream("a"), upstream("b")]})
    async with Gateway(config) as gw:
        pids = [backend(gw, n)._watch.pid for n in ("a", "b")]  # type: ignore[union-attr]
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (upstream("broken", "--fail-init"), ["exited with code 2", "missing API key"]),
        (
            {"name": "broken", "kind": "mcp", "command": "no-such-command-xyz"},
            ["command not found", "no-such-command-xyz"],
        ),
    ],
    ids=["exits-during-initialize", "command-not-found"],
)
async def test_an_upstream_that_cannot_start_is_explained_and_others_work(
    spec: dict[str, Any], expected: list[str]
) -> None:
    config = parse_config({"backends": [spec, upstream("fine")]})
    with anyio.fail_after(20):
        async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
            error = error_of(await run(client, "broken:echo", {"text": "x"}))
            assert error["code"] == "backend_unavailable"
            for fragment in expected:
                assert fragment in error["message"]
            namespaces = (await client.call_tool("list_namespaces", {})).structured_content["namespaces"]
            broken = next(n for n in namespaces if n["namespace"] == "broken")
            assert not broken["healthy"] and expected[0] in broken["message"]
            assert text_of(await run(client, "fine:echo", {"text": "ok"})) == "ok"


async def test_garbage_on_stdout_is_survived() -> None:
    config = parse_config({"backends": [upstream("noisy", "--garbage")]})
    async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
        assert text_of(await run(client, "noisy:echo", {"text": "fine"})) == "fine"


@pytest.fixture
def http_upstream() -> Iterator[tuple[str, Callable[[], None]]]:
    """The fixture server over streamable HTTP; yields its URL and a function that restarts it."""
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        if processes:
            processes[-1].terminate()
            processes[-1].wait(10)
        processes.append(subprocess.Popen([sys.executable, SERVER, "--http", str(port)]))
        wait_for_port(port)

    start()
    yield f"http://127.0.0.1:{port}/mcp", start
    for process in processes:
        process.terminate()
        process.wait(10)


async def test_streamable_http_upstream_survives_a_restart(http_upstream: tuple[str, Callable[[], None]]) -> None:
    url, restart = http_upstream
    config = parse_config({"backends": [{"name": "remote", "kind": "mcp", "url": url}]})
    async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
        assert text_of(await run(client, "remote:echo", {"text": "one"})) == "one"
        image = await run(client, "remote:image")
        assert isinstance(image.content[0], mcp_types.ImageContent)
        restart()  # the new process knows nothing of our session: 404, re-initialize, retry once
        with anyio.fail_after(15):
            result = await run(client, "remote:echo", {"text": "two"})
        assert not result.is_error, text_of(result)
        assert text_of(result) == "two"


async def test_an_http_upstream_keeps_progress_logs_and_sampling_on_the_lean_path(
    http_upstream: tuple[str, Callable[[], None]],
) -> None:
    url, _ = http_upstream
    config = parse_config({"backends": [{"name": "remote", "kind": "mcp", "url": url}]})
    reported: list[float] = []
    logs: list[Any] = []
    prompts: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append(progress)

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_sampling(context: Any, params: mcp_types.CreateMessageRequestParams) -> mcp_types.CreateMessageResult:
        prompts.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return mcp_types.CreateMessageResult(
            role="assistant", content=mcp_types.TextContent(text="forty-two"), model="test-model"
        )

    async with (
        Gateway(config) as gw,
        Client(McpSurface(gw).server, mode="legacy", logging_callback=on_log, sampling_callback=on_sampling) as client,
    ):
        assert backend(gw, "remote")._channel is not None  # calls take the lean channel
        slow = await client.call_tool(
            "run_tool", {"tool_id": "remote:slow", "args": {"steps": 3}}, progress_callback=on_progress
        )
        assert text_of(slow) == "done after 3 steps" and reported == [1, 2, 3]
        assert text_of(await run(client, "remote:log", {"message": "from http"})) == "logged"
        with anyio.fail_after(5):
            while "from http" not in logs:
                await anyio.sleep(0.02)
        # The sampling request arrives on the call's own response stream and is answered by the agent.
        assert text_of(await run(client, "remote:sample", {"prompt": "meaning?"})) == "model said: forty-two"
        assert prompts == ["meaning?"]
        error = error_of(await run(client, "remote:echo", {"wrong": 5}))  # still validated before any request
        assert "text" in error["message"]


async def test_log_messages_of_concurrent_calls_reach_their_own_callers(
    http_upstream: tuple[str, Callable[[], None]],
) -> None:
    url, _ = http_upstream
    config = parse_config({"backends": [{"name": "remote", "kind": "mcp", "url": url}]})
    received: dict[str, list[Any]] = {"a": [], "b": []}

    async def on_log_a(params: mcp_types.LoggingMessageNotificationParams) -> None:
        received["a"].append(params.data)

    async def on_log_b(params: mcp_types.LoggingMessageNotificationParams) -> None:
        received["b"].append(params.data)

    async with Gateway(config) as gw:
        surface = McpSurface(gw)
        async with (
            Client(surface.server, mode="legacy", logging_callback=on_log_a) as a,
            Client(surface.server, mode="legacy", logging_callback=on_log_b) as b,
            anyio.create_task_group() as tg,
        ):
            # Both calls are in flight when the upstream logs; each message rides its own call's stream.
            tg.start_soon(run, a, "remote:log", {"message": "for a", "delay": 0.3})
            tg.start_soon(run, b, "remote:log", {"message": "for b", "delay": 0.3})
        with anyio.fail_after(5):
            while not (received["a"] and received["b"]):
                await anyio.sleep(0.02)
    assert received == {"a": ["for a"], "b": ["for b"]}


async def test_a_stderr_flood_is_kept_bounded(client: Client, gateway: Gateway) -> None:
    result = await run(client, "up:flood", {"megabytes": 20})
    assert text_of(result) == "flooded stderr"
    watch = backend(gateway, "up")._watch
    assert watch is not None and len(watch.stderr) <= 40 and all(len(line) <= 1000 for line in watch.stderr)
    assert text_of(await run(client, "up:echo", {"text": "calm"})) == "calm"


async def test_an_endless_stdout_line_stops_the_upstream() -> None:
    flooder = upstream("flooder", "--flood-stdout", "4", max_message_bytes=2 * 1024 * 1024)
    config = parse_config({"backends": [flooder, upstream("fine")]})
    with anyio.fail_after(20):
        async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
            error = error_of(await run(client, "flooder:echo", {"text": "x"}))
            assert "sent a line longer than 2097152 bytes (the backend's max_message_bytes)" in error["message"]
            assert text_of(await run(client, "fine:echo", {"text": "ok"})) == "ok"


async def test_upstream_log_messages_reach_the_agent(gateway: Gateway) -> None:
    received: list[mcp_types.LoggingMessageNotificationParams] = []
    arrived = anyio.Event()

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        received.append(params)
        arrived.set()

    async with Client(McpSurface(gateway).server, mode="legacy", logging_callback=on_log) as client:
        assert text_of(await run(client, "up:log", {"message": "disk almost full"})) == "logged"
        with anyio.fail_after(5):
            await arrived.wait()
    assert received[0].data == "disk almost full" and received[0].logger == "up.fixture"


async def test_mcp_server_git_from_pypi(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (["init", "-q"], ["config", "user.email", "a@example.com"], ["config", "user.name", "A"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    (repo / "notes.md").write_text("first\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "Add the notes"], cwd=repo, check=True)
    git = str(Path(sys.executable).parent / "mcp-server-git")
    config = parse_config({"backends": [{"name": "git", "kind": "mcp", "command": [git, "--repository", str(repo)]}]})
    async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
        found = (await client.call_tool("search_tools", {"query": "show the commit log"})).structured_content
        assert "git:git_log" in [t["id"] for t in found["tools"][:3]]
        log = await run(client, "git:git_log", {"repo_path": str(repo)})
        assert not log.is_error and "Add the notes" in text_of(log)


async def test_a_log_message_during_a_call_reaches_a_2026_client_that_opted_in(gateway: Gateway) -> None:
    arrived = anyio.Event()
    received: list[mcp_types.LoggingMessageNotificationParams] = []

    async def on_log(params: mcp_types.LoggingMessageNotificationParams) -> None:
        received.append(params)
        arrived.set()

    async with Client(McpSurface(gateway).server, log_level="info", logging_callback=on_log) as client:
        assert client.protocol_version == "2026-07-28"
        assert text_of(await run(client, "twin:log", {"message": "per request"})) == "logged"
        with anyio.fail_after(5):
            await arrived.wait()
    assert received[0].data == "per request" and received[0].logger == "twin.fixture"


@asynccontextmanager
async def counting_proxy(target_port: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP proxy on a free loopback port that counts the connections it accepts."""
    accepted: list[int] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in source:
                await sink.send(chunk)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await sink.send_eof()

    async def serve(client: anyio.abc.SocketStream) -> None:
        accepted.append(1)
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", target_port) as upstream,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(pipe, client, upstream)
            tg.start_soon(pipe, upstream, client)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield port, accepted
        tg.cancel_scope.cancel()


async def test_calls_to_an_http_upstream_reuse_connections(http_upstream: tuple[str, Callable[[], None]]) -> None:
    url, _ = http_upstream
    upstream_port = int(url.rsplit(":", 1)[1].split("/")[0])
    async with counting_proxy(upstream_port) as (port, accepted):
        config = parse_config({"backends": [{"name": "remote", "kind": "mcp", "url": f"http://127.0.0.1:{port}/mcp"}]})
        async with Gateway(config) as gw, Client(McpSurface(gw).server) as client:
            before = len(accepted)
            for i in range(20):
                assert text_of(await run(client, "remote:echo", {"text": str(i)})) == str(i)
            opened = len(accepted) - before
    assert opened <= 2, f"{opened} new connections for 20 calls"
