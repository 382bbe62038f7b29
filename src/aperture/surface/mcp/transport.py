"""Serve the gateway over stdio or streamable HTTP."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator

import anyio
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from aperture.gateway import Gateway
from aperture.model import ConfigError
from aperture.ops.access import current_toolset
from aperture.ops.http import OpsHttpApp
from aperture.surface.mcp.events import MemoryEventStore
from aperture.surface.mcp.http_guard import BoundedHttpToolsProtocol, JsonRpcGuard
from aperture.surface.mcp.http_lean import LeanHttpApp
from aperture.surface.mcp.server import McpSurface
from aperture.surface.mcp.session_limits import SessionGuard
from aperture.surface.mcp.sessions import adapt_sessions
from aperture.surface.mcp.stdio import stdio_transport
from aperture.surface.mcp.toolset_paths import ToolsetPaths

logger = logging.getLogger(__name__)


class Termination:
    """A request to stop, from SIGTERM: a serving transport drains its calls; anything else is cancelled.

    `until_terminated` makes one and hands it to the work it runs; `serve_stdio` and `serve_http` call
    `serving()` once they answer, from when a SIGTERM lets calls in flight finish (up to
    `server.shutdown_grace` seconds) and answers the rest, instead of cancelling everything at once.
    """

    def __init__(self) -> None:
        self.requested = anyio.Event()
        self.draining = False

    def serving(self) -> None:
        self.draining = True


async def serve_stdio(gateway: Gateway, termination: Termination | None = None, *, toolset: str | None = None) -> None:
    """Answer MCP on stdin/stdout until the client closes the stream (or SIGTERM). The gateway must be entered.

    With `toolset`, the client is served that toolset's view, as `/mcp/{toolset}` serves it over HTTP.

    Raises:
        ConfigError: `toolset` is not configured.
    """
    if toolset is not None and toolset not in gateway.toolsets:
        known = ", ".join(gateway.toolsets.names) or "none are configured (see the toolsets: section)"
        raise ConfigError(f"No toolset '{toolset}' in the configuration; toolsets: {known}.")
    # Set in this task's context: what it starts (the transport's reader, and so every handler) sees it.
    token = current_toolset.set(toolset)
    try:
        surface = McpSurface(gateway)
        grace = gateway.config.server.shutdown_grace
        stopping = termination.requested if termination is not None else None
        transport = stdio_transport(surface.lean_call, stopping=stopping, drain=lambda: surface.drain(grace))
        async with transport as (read_stream, write_stream), anyio.create_task_group() as tg:
            if termination is not None:
                termination.serving()
            tg.start_soon(surface.notify_changes)
            await surface.server.run(read_stream, write_stream, surface.initialization_options())
            tg.cancel_scope.cancel()
    finally:
        current_toolset.reset(token)


async def until_terminated(work: Callable[[Termination], Awaitable[None]]) -> None:
    """Run `work`, stopping it cleanly on SIGTERM, from the very start (upstreams may be starting).

    Once `work` serves (see `Termination`), SIGTERM lets its calls finish and be answered first; before
    that, or on a second SIGTERM, or when the drain overruns, it is cancelled. Without this Python dies at
    once on SIGTERM, and an upstream that does not exit by itself when its stdin closes would outlive the
    gateway. (SIGINT already cancels cleanly through asyncio.)
    """
    termination = Termination()
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    if not termination.draining or termination.requested.is_set():
                        logger.info("received SIGTERM, shutting down")
                        tg.cancel_scope.cancel()
                        return
                    logger.info("received SIGTERM, shutting down once the calls in flight are answered")
                    termination.requested.set()
                    tg.start_soon(cancel_later)

        async def cancel_later() -> None:
            await anyio.sleep(DRAIN_LIMIT_SECONDS)
            logger.warning("still stopping after %d s; cancelling what is left", DRAIN_LIMIT_SECONDS)
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        await work(termination)
        tg.cancel_scope.cancel()


DRAIN_LIMIT_SECONDS = 120
"""After SIGTERM, the longest a serving gateway takes to stop before what is left is cancelled."""


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to `until_terminated` (uvicorn's own handler would stop serving at
    once on SIGTERM, and the calls in flight with it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


GRACE_SECONDS = 3
"""How long a stopping HTTP server waits for open requests and streams, beyond `server.shutdown_grace`,
before closing them (calls are answered within the grace; streams left open are closed after this)."""

RETRY_INTERVAL_MS = 1000
"""How long a client whose SSE stream closed waits before resuming it (sent with each stream's first event)."""


def exposure_warning(host: str, *, auth_enabled: bool) -> str | None:
    """What to say when serving on an address other machines may reach, with no credential asked of callers."""
    if auth_enabled:
        return None
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only localhost is known to stay on this machine
        loopback = host.lower() in ("localhost", "localhost.")
    if loopback:
        return None
    return (
        f"serving on {host} without authentication: anyone who can reach this address can run every tool. "
        "Enable ops.auth (API keys or JWT, docs/operations.md), or serve on 127.0.0.1 behind a proxy that "
        "authenticates."
    )


def bind_listener(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port`, taken before the gateway starts or says where it serves.

    Raises:
        ConfigError: the port is taken, or the address cannot be bound; the message says how to choose another.
    """
    how = "choose another with --port / --host (or server.port / server.host in the configuration)"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}; {how}.") from None
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"Port {port} on {host} is already in use (by another gateway or server): stop that process, or {how}."
            ) from None
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}; {how}.") from None
    return listener


def http_app(surface: McpSurface, *, path: str = "/mcp", host: str = "127.0.0.1") -> ASGIApp:
    """The ASGI app for streamable HTTP at `path` (DNS-rebinding protection on for loopback hosts).

    Streams are resumable: events are kept (bounded, in memory, per session) so a client can reconnect
    with `Last-Event-ID` and get what it missed. Tool calls on known sessions take the lean path
    (`http_lean`), unless `server.sse_poll_after` asks for streams that let go during long calls.
    """
    sessions = surface.gateway.config.server.sessions
    app = surface.server.streamable_http_app(
        streamable_http_path=path,
        host=host,
        event_store=MemoryEventStore(),
        retry_interval=RETRY_INTERVAL_MS,
        session_idle_timeout=sessions.idle_timeout,
        max_sessions=sessions.max_total,
    )
    manager = surface.server.session_manager
    # An event store per session; streams primed by the version initialised with.
    adapt_sessions(manager, event_store_bytes=sessions.event_store_bytes)
    calls: ASGIApp = app  # long calls let go of their streams (sse_poll_after): the SDK's path only
    if surface.gateway.config.server.sse_poll_after is None:
        calls = LeanHttpApp(app, surface, manager, path=path, retry_ms=RETRY_INTERVAL_MS)
    # Health, metrics and authentication sit outside both call paths (the SDK's and the lean one); inside
    # them, first the guard that refuses bodies no parser should read, then the session limits (authentication
    # tells who the caller is, and the limits read the bodies of sessions not yet initialised).
    authenticated = surface.gateway.requires_auth
    guarded = SessionGuard(calls, manager, sessions, path=path, authenticated=authenticated)
    # Toolsets' virtual servers (`{path}/{toolset}`) behind authentication: a 404 names only what the caller may use.
    toolsets = ToolsetPaths(JsonRpcGuard(guarded, path=path), surface.gateway, path=path)
    return OpsHttpApp(toolsets, surface.gateway.ops, path=path)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """What answers where no surface is served: 404 (and the lifespan, which it has nothing to do in)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b'{"error": "not_found", "message": "Nothing is served at this path."}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_http(
    gateway: Gateway,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    path: str = "/mcp",
    termination: Termination | None = None,
    listener: socket.socket | None = None,
    beside: Callable[[ASGIApp], ASGIApp] | None = None,
    mcp: bool = True,
) -> None:
    """Answer MCP over streamable HTTP until cancelled (or SIGTERM). The gateway must be entered.

    `listener` is a socket from `bind_listener` (bound to `host:port`); without one, it is bound here.
    `beside` serves another surface next to MCP: it gets the MCP app and returns the app to serve (the A2A
    surface's `A2aSurface.beside`); with `mcp` false, only it (and the health and metrics endpoints) is served.

    On SIGTERM the server stops accepting connections, calls in flight finish for up to
    `server.shutdown_grace` seconds and the rest are answered `shutting_down`; then it stops.
    """
    listener = listener if listener is not None else bind_listener(host, port)
    surface = McpSurface(gateway)
    grace = gateway.config.server.shutdown_grace
    app = http_app(surface, path=path, host=host) if mcp else OpsHttpApp(_not_found, gateway.ops, path=path)
    if beside is not None:
        app = beside(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(grace) + GRACE_SECONDS,
        http=BoundedHttpToolsProtocol.bounded(gateway.config.server.max_header_bytes),
    )
    server = _Server(config)
    if mcp:
        logger.info("serving MCP on http://%s:%d%s", host, port, path)
    stopped = anyio.Event()

    async def serve() -> None:
        # Shielded: cancelling uvicorn mid-loop leaves its lifespan task (and the SDK's session manager in
        # it) to be torn down at loop close, out of its own cancel scope. It is asked to exit instead.
        with anyio.CancelScope(shield=True):
            await server.serve(sockets=[listener])
        stopped.set()

    async def drain(requested: anyio.Event) -> None:
        await requested.wait()
        server.should_exit = True  # no new connections; open ones close once answered
        await surface.drain(grace)

    async with anyio.create_task_group() as tg:
        tg.start_soon(surface.notify_changes)
        tg.start_soon(serve)
        if termination is not None:
            termination.serving()
            tg.start_soon(drain, termination.requested)
        try:
            await stopped.wait()
        finally:
            server.should_exit = True  # on cancellation (SIGTERM, Ctrl-C): a graceful stop, then the group ends
        tg.cancel_scope.cancel()
