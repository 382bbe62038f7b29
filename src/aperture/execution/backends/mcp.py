"""The `mcp` backend: an upstream MCP server (stdio or streamable HTTP) behind the gateway.

One long-lived session per upstream carries every call concurrently (the SDK multiplexes requests by
id); never a session or a process per call. A supervisor task starts the upstream, initializes it,
lists its tools (following pagination and `notifications/tools/list_changed`), and restarts it with
exponential backoff when it dies. Calls in flight when it dies fail at once with the exit code and the
tail of its stderr; calls while it is down fail at once saying when the next attempt is.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.abc
import httpx2
import mcp_types
from anyio.streams.memory import MemoryObjectSendStream
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ValidationError

from aperture.execution.backend import CallContext, HealthStatus, LogListener, ResourceListener
from aperture.execution.backends._http import SessionHeaders, upstream_http_client
from aperture.execution.backends.mcp_clients import ClientSessions
from aperture.execution.backends.mcp_http_raw import HttpPoster
from aperture.execution.backends.mcp_raw import ID_PREFIX, ChannelClosedError, RawChannel
from aperture.execution.backends.mcp_routing import ASKING_METHODS, CallRoutes, InFlight
from aperture.execution.backends.mcp_stdio import ProcessWatch, stdio_upstream
from aperture.execution.backends.mcp_upstream import (
    BACKEND_KIND,
    MAX_PAGES,
    HttpTarget,
    RestartPolicy,
    StdioTarget,
    UpstreamState,
    all_pages,
    explain_failure,
    server_context,
    session_lost,
    stopped,
    upstream_tool,
)
from aperture.model import (
    BackendUnavailableError,
    ExecutionError,
    Tool,
    ToolId,
    UnknownToolError,
)
from aperture.model.errors import shorten

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)


class McpBackend:
    """A supervised connection to one upstream MCP server.

    `start(task_group)` (the gateway calls it) runs the supervisor and waits, up to `init_timeout`, for
    the first successful start; a failed first start is reported, and retried in the background like
    any later crash. `aclose()` stops it.
    """

    kind = BACKEND_KIND

    def __init__(
        self,
        name: str,
        target: StdioTarget | HttpTarget,
        *,
        init_timeout: float = 30.0,
        restart: RestartPolicy | None = None,
        lazy: bool = False,
        known_tools: Sequence[Tool] = (),
        isolation: str = "shared",
        client_sessions: int = 16,
        client_idle_timeout: float = 300.0,
    ) -> None:
        ToolId(name, "x")  # validates the namespace
        self._name = name
        self.target = target
        self.init_timeout = init_timeout
        self.restart = restart or RestartPolicy()
        # A lazy upstream starts on its first call; until then it lists the tools it had last time.
        self.lazy = lazy and bool(known_tools)
        self.state = UpstreamState.IDLE if self.lazy else UpstreamState.STARTING
        self.last_error: str | None = None
        self.restarts = 0
        self._client: Client | None = None
        self._channel: RawChannel | None = None  # the lean path for tools/call, on stdio upstreams
        self._tools: dict[str, tuple[Tool, str]] = {tool.name: (tool, tool.name) for tool in known_tools}
        self._listener: Callable[[str], None] | None = None
        self._retry_at = 0.0
        self._watch: ProcessWatch | None = None
        self._reconnect = False  # the next start is planned (a lost session), not a crash: no backoff
        self._resource_listener: ResourceListener | None = None
        self._log_listener: LogListener | None = None
        # Which call each message the upstream sends back belongs to; over HTTP its stream says so.
        self._routes = CallRoutes(name, related=isinstance(target, HttpTarget) and not target.sse)
        # isolation: per_client: each client's calls on a session of its own; this one lists, reads, prompts.
        self._clients = (
            ClientSessions(
                name, self._client_session, limit=client_sessions, idle_timeout=client_idle_timeout, kind=self.kind
            )
            if isolation == "per_client"
            else None
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        # Made in start(): anyio primitives need a running event loop.
        self._ready: anyio.Event
        self._settled: anyio.Event  # the first start finished, either way
        self._broken: anyio.Event
        self._finished: anyio.Event
        self._sleeping: anyio.CancelScope

    @property
    def name(self) -> str:
        return self._name

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run the supervisor in `task_group`; return once the first start has succeeded or failed.

        The first start is awaited for at most `init_timeout`; after that, starting goes on in the background.
        """
        self._ready, self._settled, self._broken, self._finished = (anyio.Event() for _ in range(4))
        self._sleeping = anyio.CancelScope()
        self._task_group = task_group
        if self._clients is not None:
            self._clients.start(task_group)
        if self.state is UpstreamState.IDLE:
            self._settled.set()
            return
        task_group.start_soon(self._supervise)
        with anyio.move_on_after(self.init_timeout + 1):
            await self._settled.wait()
        if not self._settled.is_set():
            self.last_error = f"did not finish starting within {self.init_timeout:g} s"

    async def aclose(self) -> None:
        """Stop the upstream (its whole process group) and the supervisor."""
        if self.state is UpstreamState.CLOSED:
            return
        self.state = UpstreamState.CLOSED
        self._listener = None
        if self._clients is not None:
            await self._clients.aclose()
        if self._task_group is not None:
            self._broken.set()
            self._sleeping.cancel()
            with anyio.move_on_after(10):
                await self._finished.wait()

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    async def _supervise(self) -> None:
        try:
            await self._supervise_loop()
        finally:
            self._finished.set()

    async def _supervise_loop(self) -> None:
        attempt_number = 0
        while self.state is not UpstreamState.CLOSED:
            watch = self._watch = ProcessWatch()
            broken = self._broken = anyio.Event()
            ready = False
            # The deadline covers start, initialize and the first listing; it is lifted once ready.
            with anyio.CancelScope(deadline=anyio.current_time() + self.init_timeout) as attempt:
                try:
                    async with self._connect(watch, broken) as client:
                        await self._relist(client)
                        attempt.deadline = math.inf
                        self._client = client
                        self.state = UpstreamState.READY
                        ready = True
                        self.last_error = None
                        attempt_number = 0
                        self._ready.set()
                        self._settled.set()
                        logger.info("upstream %s ready: %d tools", self._name, len(self._tools))
                        await broken.wait()
                except Exception as exc:
                    if isinstance(self.target, StdioTarget) and watch.pid is not None:  # (None: it never started)
                        with anyio.move_on_after(1):  # let the exit code arrive before explaining
                            await watch.exited.wait()
                    self.last_error = explain_failure(exc, watch, starting=not ready)
                    logger.warning("upstream %s failed: %s", self._name, self.last_error)
                finally:
                    self._client = None
                    if self._ready.is_set():  # a waiter may already hold an unset one: keep it
                        self._ready = anyio.Event()
            if attempt.cancelled_caught:
                self.last_error = f"no answer to initialize within {self.init_timeout:g} s"
                logger.warning("upstream %s failed: %s", self._name, self.last_error)
            if self.state is UpstreamState.CLOSED:
                return
            if self._reconnect:
                self._reconnect = False
                continue
            if watch.returncode is not None or watch.problem:
                self.last_error = stopped(watch, starting=not ready)
            self.state = UpstreamState.DOWN
            delay = self.restart.delay(attempt_number)
            attempt_number += 1
            self.restarts += 1
            self._retry_at = time.monotonic() + delay
            self._settled.set()
            with self._sleeping:
                await anyio.sleep(delay)
            self._sleeping = anyio.CancelScope()

    @asynccontextmanager
    async def _connect(self, watch: ProcessWatch, broken: anyio.Event) -> AsyncIterator[Client]:
        transport: AbstractAsyncContextManager[Any]
        channel = RawChannel()  # the lean path for tools/call, on stdio and streamable-HTTP upstreams
        channel.on_log = self._on_raw_log
        channel.on_answer = self._on_answer
        http: httpx2.AsyncClient | None = None
        url = ""
        session = SessionHeaders()
        poster: HttpPoster | None = None
        if isinstance(self.target, StdioTarget):
            t = self.target
            transport = stdio_upstream(
                t.command,
                t.args,
                env=t.env,
                inherit_env=t.inherit_env,
                cwd=t.cwd,
                watch=watch,
                channel=channel,
                max_line_bytes=t.max_message_bytes,
            )
        elif self.target.sse:
            transport = sse_client(self.target.url, headers=dict(self.target.headers))
        else:
            url = self.target.url
            http = upstream_http_client(self.target.headers, session)
            transport = _closing(http, streamable_http_client(self.target.url, http_client=http))
        async with transport as streams, anyio.create_task_group() as links:
            if isinstance(self.target, StdioTarget):
                # Death during initialize is reported with the exit code, not as a timeout.
                self._task_group_or_fail().start_soon(_set_when, watch.exited, broken)
            read_stream = streams[0]
            if http is not None:
                # Messages on a lean call's response stream that are not its own go to the session.
                merged_send, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                links.start_soon(_forward, streams[0], merged_send)
                poster = HttpPoster(
                    http,
                    url,
                    session,
                    channel,
                    partial(self._inject, merged_send),
                    max_message_bytes=self.target.max_message_bytes,
                )
                channel.open(poster.send, links)
            try:
                async with Client(
                    _Streams((read_stream, streams[1])),
                    mode="legacy",
                    message_handler=self._on_message,
                    logging_callback=self._on_log,
                    sampling_callback=self._on_sampling,
                    elicitation_callback=self._on_elicitation,
                    cache=None,  # responses are the gateway's to cache (ops layer), not the session's
                ) as client:
                    self._channel = channel if (http is not None or isinstance(self.target, StdioTarget)) else None
                    try:
                        yield client
                    finally:
                        self._channel = None
            finally:
                channel.close("the upstream connection closed")
                links.cancel_scope.cancel()
                if poster is not None:
                    await poster.aclose()  # its own kept-alive connections (shielded: never waits)

    def _task_group_or_fail(self) -> anyio.abc.TaskGroup:
        if self._task_group is None:
            raise RuntimeError("McpBackend.start(task_group) must be called before use")
        return self._task_group

    async def _relist(self, client: Client) -> None:
        tools: dict[str, tuple[Tool, str]] = {}
        cursor: str | None = None
        context = server_context(client.server_info, client.instructions)
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            for listed in page.tools:
                converted, upstream_name = upstream_tool(self._name, listed, context=context)
                tools[converted.name] = (converted, upstream_name)
            cursor = page.next_cursor
            if not cursor:
                break
        changed = tools.keys() != self._tools.keys() or any(
            tools[k][0] != self._tools[k][0] for k in tools if k in self._tools
        )
        self._tools = tools
        if changed and self._listener is not None:
            self._listener(self._name)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ProgressNotification):
            token = message.params.progress_token
            # The lean channel takes progress for its own calls; the SDK session matches its own calls' tokens.
            if (isinstance(token, str) and token.startswith(ID_PREFIX)) or not self._routes.sdk_calls():
                self._routes.drop("progress", f"token {token!r}")
        elif isinstance(message, mcp_types.ToolListChangedNotification) and self._client is not None:
            client = self._client
            self._task_group_or_fail().start_soon(self._relist_quietly, client)
        elif isinstance(message, mcp_types.ResourceUpdatedNotification) and self._resource_listener is not None:
            self._task_group_or_fail().start_soon(self._resource_listener, self._name, str(message.params.uri))

    async def _on_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        # Read by the SDK session: over HTTP off every call's stream (so no call's); over SSE, all of them.
        self._log(params, None)

    def _on_raw_log(self, raw: dict[str, Any], stream_of: Any) -> None:
        try:
            params = mcp_types.LoggingMessageNotificationParams.model_validate(raw, by_name=False)
        except ValidationError:
            logger.info("upstream %s sent a malformed log message: %s", self._name, shorten(str(raw), 300))
            return
        self._log(params, stream_of)

    def _on_answer(self, context: Any) -> None:
        if isinstance(context, InFlight):
            self._routes.end(context)

    def _log(self, params: mcp_types.LoggingMessageNotificationParams, stream_of: Any) -> None:
        logger.info("upstream %s log [%s]: %s", self._name, params.level, shorten(str(params.data), 500))
        owner = self._routes.owner_of_notice(stream_of)
        if owner is None:
            self._routes.drop("log", shorten(str(params.data), 200))
        elif self._log_listener is not None:
            self._task_group_or_fail().start_soon(self._log_listener, self._name, params, owner.ctx)

    async def _relist_quietly(self, client: Client) -> None:
        try:
            await self._relist(client)
        except (MCPError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            logger.warning("upstream %s: re-listing tools failed: %s", self._name, exc)

    # --- the Backend protocol -------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        if self.state is not UpstreamState.READY and not self._tools:
            # Without the time of the next attempt: the registry keeps this text, and it would go stale.
            raise BackendUnavailableError(f"{self.last_error or 'it is not running'}.", backend_kind=self.kind)
        return [tool for tool, _ in self._tools.values()]

    async def get_tool(self, name: str) -> Tool | None:
        entry = self._tools.get(name)
        return entry[0] if entry else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        entry = self._tools.get(name)
        if entry is None:
            raise UnknownToolError(f"{self._name}:{name}", [f"{self._name}:{n}" for n in list(self._tools)[:3]])
        if self._clients is not None:
            async with self._clients.lease(ctx) as own:
                if own is not None:
                    return await own.call(name, args, ctx)
        try:
            return await self._call_once(entry[1], args, ctx)
        except MCPError as exc:
            if not (isinstance(self.target, HttpTarget) and session_lost(exc)):
                raise self._upstream_error(exc) from exc
        # The upstream forgot our session (it restarted): start a new one and retry once.
        logger.info("upstream %s lost the session; re-initializing", self._name)
        if self.state is UpstreamState.READY:
            self._ready = anyio.Event()
            self.state = UpstreamState.STARTING
            self._reconnect = True
            self._broken.set()
        try:
            return await self._call_once(entry[1], args, ctx)
        except MCPError as exc:
            raise self._upstream_error(exc) from exc

    async def _call_once(self, upstream_name: str, args: dict[str, Any], ctx: CallContext) -> Any:
        client = await self._ready_client()

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(progress, total, message)

        channel = self._channel
        lean = channel is not None and channel.usable
        in_flight = self._routes.begin(ctx, lean=lean)
        try:
            on_progress = None if ctx.progress is None else progress
            if channel is not None and lean:
                call = {"name": upstream_name, "arguments": args}
                raw = await channel.request("tools/call", call, on_progress, context=in_flight)
                return _call_result(raw, self._name)
            return await client.call_tool(upstream_name, args, progress_callback=on_progress)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                raise await self._died_during_call() from exc
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ChannelClosedError, OSError) as exc:
            raise await self._died_during_call() from exc
        finally:
            self._routes.end(in_flight)

    def _client_session(self) -> McpBackend:
        """A session to the same upstream for one client (`isolation: per_client`), knowing the same tools."""
        own = McpBackend(self._name, self.target, init_timeout=self.init_timeout, restart=self.restart)
        own._routes.one_client = True
        own._tools = dict(self._tools)
        own._routes.unrouted = self._routes.unrouted  # one count for the backend
        own._log_listener = self._relay_log
        return own

    async def _relay_log(
        self, backend: str, params: mcp_types.LoggingMessageNotificationParams, caller: CallContext
    ) -> None:
        if self._log_listener is not None:
            await self._log_listener(backend, params, caller)

    # --- requests the upstream sends back during a call (sampling, elicitation) ------------------

    async def _on_sampling(
        self, context: Any, params: mcp_types.CreateMessageRequestParams
    ) -> mcp_types.CreateMessageResult | mcp_types.ErrorData:
        request = mcp_types.CreateMessageRequest(params=params)
        return await self._ask_caller(context, "sampling", request, mcp_types.CreateMessageResult)

    async def _on_elicitation(self, context: Any, params: Any) -> mcp_types.ElicitResult | mcp_types.ErrorData:
        request = mcp_types.ElicitRequest(params=params)
        return await self._ask_caller(context, "elicitation", request, mcp_types.ElicitResult)

    async def _ask_caller(
        self, context: Any, kind: str, request: Any, result_type: type[ResultT]
    ) -> ResultT | mcp_types.ErrorData:
        """Forward a request from the upstream to the client whose call raised it; refuse it when none can be told."""
        owner = self._routes.owner_of_ask(getattr(context, "request_id", None))
        if owner is None:
            self._routes.drop(kind, f"request {getattr(context, 'request_id', None)!r}")
            return mcp_types.ErrorData(code=mcp_types.INVALID_REQUEST, message=self._routes.refusal(kind))
        peer = owner.ctx.peer
        if peer is None:
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST,
                message=f"The client whose call to '{self._name}' sent this {kind} request cannot be asked: it "
                "reached the gateway without a session to send requests back on.",
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # sampling is handshake-era, as is the session
                result: ResultT = await peer.send_request(request, result_type)
                return result
        except MCPError as exc:
            return exc.error

    async def _inject(self, sink: MemoryObjectSendStream[SessionMessage | Exception], message: Any, call: Any) -> None:
        """Hand the SDK session a message read off a lean call's stream, as if its transport had read it.

        A request the server sends back on a call's stream (sampling, elicitation) is noted as that call's.
        """
        try:
            parsed = mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValidationError:
            logger.warning("upstream sent a message that is not JSON-RPC: %s", shorten(str(message), 200))
            return
        if isinstance(parsed, mcp_types.JSONRPCRequest) and parsed.method in ASKING_METHODS:
            self._routes.note_ask(parsed.id, call)
        try:
            await sink.send(SessionMessage(parsed))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.debug("upstream connection closed; dropped a message")

    def _upstream_error(self, exc: MCPError) -> ExecutionError:
        return ExecutionError(
            f"Upstream '{self._name}' answered with an error: {exc.message}", details={"code": exc.code}
        )

    async def _died_during_call(self) -> BackendUnavailableError:
        """The error for a call whose upstream went away: with the exit code and stderr when there are."""
        watch = self._watch
        self._broken.set()
        if watch is not None:
            with anyio.move_on_after(1):
                await watch.exited.wait()
        story = watch.describe() if watch is not None and (watch.returncode is not None or watch.problem) else ""
        return BackendUnavailableError(
            f"Upstream '{self._name}' stopped during the call"
            + (f" ({story})" if story else "")
            + ". It is being restarted; retry in a few seconds.",
            backend_kind=self.kind,
            details={"returncode": watch.returncode if watch else None},
        )

    async def _ready_client(self) -> Client:
        if self._task_group is None:
            raise BackendUnavailableError(f"Backend '{self._name}' was never started.", backend_kind=self.kind)
        if self.state is UpstreamState.IDLE:
            logger.info("upstream %s: first call, starting it", self._name)
            self.state = UpstreamState.STARTING
            self._task_group.start_soon(self._supervise)
        if self.state is UpstreamState.STARTING:
            with anyio.move_on_after(self.init_timeout):
                await self._ready.wait()
        client = self._client
        if client is None or self.state is not UpstreamState.READY:
            raise BackendUnavailableError(self._unavailable_message(), backend_kind=self.kind)
        return client

    def down_reason(self) -> str | None:
        """Why calls cannot run now: the upstream could not start, or it stopped (None while it runs, starts or
        waits, lazy, for its first call). The `Availability` the gateway asks of a backend."""
        if self.state in (UpstreamState.DOWN, UpstreamState.CLOSED):
            return self.last_error or "it is not running"
        return None

    def _unavailable_message(self) -> str:
        """Why calls fail now, and when the next start attempt is: from the time of asking, never of failing."""
        wait = self._retry_at - time.monotonic()
        when = f"Next start attempt in {wait:.1f} s." if wait > 0 else "A start attempt is under way."
        return (
            f"Backend '{self._name}' is unavailable: {self.last_error or 'it is not running'}. {when} Retry after that."
        )

    # --- resources and prompts (forwarded as they are) ------------------------------------------

    def set_log_listener(self, listener: LogListener | None) -> None:
        """Call `listener(backend_name, params, caller)` for every log message the upstream sends: on the one
        call the message belongs to (see `mcp_routing`); a message that matches no call is counted and goes to
        no listener."""
        self._log_listener = listener

    def set_resource_listener(self, listener: ResourceListener | None) -> None:
        """Call `listener(backend_name, uri)` when the upstream reports that a resource changed."""
        self._resource_listener = listener

    def _supports(self, client: Client, feature: str) -> bool:
        return getattr(client.server_capabilities, feature, None) is not None

    async def list_resources(self) -> list[mcp_types.Resource]:
        client = await self._ready_client()
        if not self._supports(client, "resources"):
            return []
        return await all_pages(lambda cursor: client.list_resources(cursor=cursor), "resources")

    async def list_resource_templates(self) -> list[mcp_types.ResourceTemplate]:
        client = await self._ready_client()
        if not self._supports(client, "resources"):
            return []
        return await all_pages(lambda cursor: client.list_resource_templates(cursor=cursor), "resource_templates")

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        client = await self._ready_client()
        try:
            return await client.read_resource(uri)
        except MCPError as exc:
            raise self._upstream_error(exc) from exc

    async def subscribe_resource(self, uri: str, subscribe: bool = True) -> None:
        client = await self._ready_client()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # handshake-era upstream session
            if subscribe:
                await client.subscribe_resource(uri)
            else:
                await client.unsubscribe_resource(uri)

    async def list_prompts(self) -> list[mcp_types.Prompt]:
        client = await self._ready_client()
        if not self._supports(client, "prompts"):
            return []
        return await all_pages(lambda cursor: client.list_prompts(cursor=cursor), "prompts")

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> mcp_types.GetPromptResult:
        client = await self._ready_client()
        try:
            return await client.get_prompt(name, arguments)
        except MCPError as exc:
            raise self._upstream_error(exc) from exc

    async def complete(
        self, ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference, argument: dict[str, str]
    ) -> mcp_types.CompleteResult:
        client = await self._ready_client()
        if not self._supports(client, "completions"):
            return mcp_types.CompleteResult(completion=mcp_types.Completion(values=[]))
        try:
            return await client.complete(ref, argument)
        except MCPError as exc:
            raise self._upstream_error(exc) from exc

    async def health(self) -> HealthStatus:
        if self.state is UpstreamState.IDLE:
            return HealthStatus(
                healthy=True, message=f"idle: starts on the first call ({len(self._tools)} tools known)"
            )
        client = self._client
        if client is None or self.state is not UpstreamState.READY:
            return HealthStatus(healthy=False, message=self._unavailable_message())
        started = time.perf_counter()
        with warnings.catch_warnings():
            # Upstream sessions use the handshake era (mode="legacy"), where ping is part of the protocol.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.send_ping()
        return HealthStatus(
            healthy=True,
            message=f"{len(self._tools)} tools from {self.target}{self._clients_note()}{self._unrouted_note()}",
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    @property
    def unrouted(self) -> dict[str, int]:
        """Messages from the upstream that matched no call in flight and were dropped or refused, by kind."""
        return dict(self._routes.unrouted)

    def _clients_note(self) -> str:
        return "" if self._clients is None else f"; {len(self._clients)} per-client sessions"

    def _unrouted_note(self) -> str:
        counts = self._routes.unrouted
        if not counts:
            return ""
        listed = ", ".join(f"{kind} {counts[kind]}" for kind in sorted(counts))
        return f"; messages that matched no call (dropped): {listed}"


async def _forward(source: Any, sink: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
    async with sink:
        async for item in source:
            await sink.send(item)


def _call_result(raw: Any, backend: str) -> mcp_types.CallToolResult:
    """A `tools/call` result read off the lean channel, checked as the SDK session would."""
    try:
        return mcp_types.CallToolResult.model_validate(raw, by_name=False)
    except ValidationError as exc:
        raise ExecutionError(
            f"Upstream '{backend}' answered tools/call with a malformed result: {shorten(str(exc), 300)}",
            details={"code": mcp_types.INTERNAL_ERROR},
        ) from exc


@asynccontextmanager
async def _closing(http: httpx2.AsyncClient, transport: AbstractAsyncContextManager[Any]) -> AsyncIterator[Any]:
    """Enter `transport`, and close the HTTP client it was given afterwards."""
    async with http, transport as streams:
        yield streams


class _Streams:
    """Hand already-open streams to `Client`, which wants a transport to enter."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams

    async def __aenter__(self) -> Any:
        return self._streams

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _set_when(happened: anyio.Event, then: anyio.Event) -> None:
    await happened.wait()
    then.set()
