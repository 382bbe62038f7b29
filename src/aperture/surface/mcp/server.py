"""The MCP server: the meta-tools on the official SDK's low-level `Server`, answering from a `Gateway`."""

from __future__ import annotations

import difflib
import logging
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import cached_property
from typing import Any

import anyio
import mcp_types
from mcp.server import Server
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

import aperture
from aperture.execution import CallContext, LogSource, RunResult
from aperture.gateway import META_TOOLS, Gateway, MetaTool, internal_failure, offered_meta_tool, offered_meta_tools
from aperture.model import ApertureError, ShuttingDownError, Tool, UnknownToolError
from aperture.ops.access import Access
from aperture.surface.mcp import lean
from aperture.surface.mcp.exposure import Exposure
from aperture.surface.mcp.federation import Federation, VisibleBus
from aperture.surface.mcp.lean import LeanPeer, Notify
from aperture.surface.mcp.results import error_result, json_result, passthrough_result, run_result
from aperture.surface.mcp.sessions import on_close

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "This server is a gateway to many tools. Find one with search_tools (a few words about the task), read "
    "its input schema with describe_tool, then call it with run_tool(tool_id, args). Errors say what to fix."
)

_BEFORE_INITIALIZED = frozenset({"initialize", "ping"})
_NOT_TAKEN = "The gateway is shutting down and takes no new calls. Retry in a few seconds, once it is back."
_STOPPED = (
    "The gateway is shutting down and stopped this call before it finished, so it may or may not have taken "
    "effect. Check before retrying anything that changes state; retry in a few seconds, once it is back."
)
_LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def meta_listing(tool: MetaTool[Any]) -> mcp_types.Tool:
    """How `tools/list` shows a meta-tool."""
    return mcp_types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.listing_schema,
        # readOnlyHint lets a client run search and describe without asking; what MCP assumes when unset
        # (readOnlyHint false for run_tool) and openWorldHint are left unsaid: an agent pays for every token.
        annotations=mcp_types.ToolAnnotations(read_only_hint=True) if tool.read_only else None,
    )


class _GatewayServer(Server[Any]):
    """The SDK's low-level server, announcing `tools/list_changed` whatever the transport.

    The HTTP session manager builds each session's initialization options itself, with no notification
    options; the gateway does send tool list changes, so its default says so.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), experimental_capabilities, extensions
        )


class McpSurface:
    """Builds the low-level MCP `Server` for a gateway; the same server serves stdio and HTTP."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.config.server
        self._meta = settings.expose in ("meta", "both")
        self._passthrough = settings.expose in ("passthrough", "both")
        self._surfaced = tuple(settings.surfaced)
        self._poll_after = settings.sse_poll_after
        self._separator = settings.separator
        self._namespaced = settings.namespaced
        self._meta_listings = {tool.name: meta_listing(tool) for tool in META_TOOLS}
        self._exposure = Exposure(version=-1)
        self._view_exposures: dict[tuple[int, tuple[str, ...]], Exposure] = {}  # per toolset view, this version
        # One session per live connection. The SDK makes a ServerSession per request and offers no public
        # handle on the connection, so the connection keys the last session seen on it. Not weakly: the
        # session refers to its connection, so a weak key would never die. Entries go when the connection
        # closes (`_remember` hooks its exit stack).
        self._sessions: dict[object, ServerSession] = {}
        self._changed = anyio.Event()
        # 2026-07-28 clients hear of changes through `subscriptions/listen`; older ones by notifications.
        self._bus = InMemorySubscriptionBus()
        self.federation = Federation(
            gateway.registry, separator=settings.separator, namespaced=settings.namespaced, bus=self._bus
        )
        # Each listen stream hears only of resources its caller may read.
        self._listen = ListenHandler(VisibleBus(self._bus, self.federation.readable))
        self._log_levels: dict[object, str] = {}  # by connection, as `_sessions`
        # The lean path's callers: the connection seen last (stdio has one), and HTTP sessions' by session id.
        self._last_connection: weakref.ref[object] | None = None
        self._http_connections: weakref.WeakValueDictionary[str, object] = weakref.WeakValueDictionary()
        # Tool calls in flight, each in a scope `drain` may cancel once the gateway is stopping.
        self._calls: set[anyio.CancelScope] = set()
        self._no_calls = anyio.Event()
        self._stopping = False
        self._offered = self._offered_names()
        gateway.on_tools_changed(self._on_tools_changed)
        self._listen_to_upstreams()

    @cached_property
    def server(self) -> Server[Any]:
        server = _GatewayServer(
            self.gateway.config.server.name,
            version=aperture.__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_list_resources=self._on_list_resources,
            on_list_resource_templates=self._on_list_resource_templates,
            on_read_resource=self._on_read_resource,
            on_subscribe_resource=self._on_subscribe,
            on_unsubscribe_resource=self._on_unsubscribe,
            on_list_prompts=self._on_list_prompts,
            on_get_prompt=self._on_get_prompt,
            on_completion=self._on_completion,
            on_subscriptions_listen=self._on_listen,
        )
        # Registered this way: the constructor argument warns that logging is deprecated in 2026-07-28,
        # but handshake-era clients (most of them) still set a level.
        server.add_request_handler("logging/setLevel", mcp_types.SetLevelRequestParams, self._on_set_level)
        # The SDK wraps every message in an OpenTelemetry span by default; tool calls get their own spans
        # from the operations layer, and the per-message one costs on the hot path even with no exporter.
        server.middleware = [self._require_initialized]
        return server

    async def _require_initialized(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Refuse requests other than ping until the handshake is complete (the lifecycle's initialization phase).

        A handshake-era connection is ready once `notifications/initialized` arrived (the SDK serves requests
        as soon as `initialize` did); a 2026-07-28 request carries its own envelope and needs no handshake.
        Methods the server does not serve stay the SDK's to answer (-32601).
        """
        if ctx.request_id is None or ctx.method in _BEFORE_INITIALIZED or _handshake_done(ctx.session):
            return await call_next(ctx)
        if self.server.get_request_handler(ctx.method) is None:
            return await call_next(ctx)
        started = ctx.session.client_params is not None
        raise MCPError(
            code=mcp_types.INVALID_REQUEST,
            message=f"The connection is not initialized yet, so '{ctx.method}' was refused. "
            + (
                "Send the notifications/initialized notification"
                if started
                else "Send initialize, then the notifications/initialized notification once its result arrives,"
            )
            + " before any other request (only ping is answered before that).",
        )

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options()

    def exposure(self, access: Access | None = None) -> Exposure:
        """The directly listed tools for the current catalog (rebuilt only when the catalog changes), as the
        caller of `access` sees them through its toolset view: only the view's tools, under their ids in it
        (routes lead to those ids)."""
        index = self.gateway.index
        view = access.view if access is not None else None
        if view is None:
            if self._exposure.version != index.version:
                self._exposure = self._build_exposure(index.tools(), index.version, self._surfaced)
            return self._exposure
        key = (index.version, view.names)
        found = self._view_exposures.get(key)
        if found is None:
            if len(self._view_exposures) > 64 or any(v != index.version for v, _ in self._view_exposures):
                self._view_exposures = {}
            tools = [view.present(tool) for tool in index.tools() if view.contains(tool.key)]
            surfaced = [view.public_key(key) for key in self._surfaced if view.contains(key)]
            found = self._view_exposures[key] = self._build_exposure(tools, index.version, surfaced)
        return found

    def _build_exposure(self, tools: list[Tool], version: int, surfaced: Sequence[str]) -> Exposure:
        return Exposure.build(
            tools,
            version=version,
            passthrough=self._passthrough,
            surfaced=surfaced,
            separator=self._separator,
            reserved={tool.name for tool in META_TOOLS} if self._meta else (),
            namespaced=self._namespaced,
        )

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        self._remember(ctx)
        access = self.gateway.access()
        exposure = self.exposure(access)
        listed = exposure.listed
        if not access.unrestricted and exposure.routes:  # a caller lists only the tools it may run
            visible = self.gateway.ops.visible_tools()
            listed = tuple(t for t in listed if exposure.routes.get(t.name) in visible)
        return mcp_types.ListToolsResult(tools=[*self._offered_listings(), *listed])

    def _offered_listings(self) -> list[mcp_types.Tool]:
        if not self._meta:
            return []
        return [self._meta_listings[tool.name] for tool in offered_meta_tools(self.gateway)]

    # --- resources and prompts of the upstreams (each as the caller may see them) ---------------

    async def _on_list_resources(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourcesResult:
        return mcp_types.ListResourcesResult(resources=await self.federation.list_resources(self.gateway.access()))

    async def _on_list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourceTemplatesResult:
        templates = await self.federation.list_templates(self.gateway.access())
        return mcp_types.ListResourceTemplatesResult(resource_templates=templates)

    async def _on_read_resource(
        self, ctx: ServerRequestContext[Any], params: mcp_types.ReadResourceRequestParams
    ) -> mcp_types.ReadResourceResult:
        with self.gateway.ops.audited("resource_read", str(params.uri)):
            return await self.federation.read(str(params.uri), self.gateway.access())

    async def _on_subscribe(
        self, ctx: ServerRequestContext[Any], params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        await self.federation.subscribe(str(params.uri), ctx.session, self.gateway.access())
        return mcp_types.EmptyResult()

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext[Any], params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        await self.federation.subscribe(str(params.uri), ctx.session, self.gateway.access(), subscribe=False)
        return mcp_types.EmptyResult()

    async def _on_listen(
        self, ctx: ServerRequestContext[Any], params: mcp_types.SubscriptionsListenRequestParams
    ) -> mcp_types.SubscriptionsListenResult:
        """A 2026-07-28 client's event stream; the upstreams owning the resources it watches (and may read)
        are subscribed for as long as it listens."""
        uris = params.notifications.resource_subscriptions or ()
        return await self.federation.listen(uris, self.gateway.access(), lambda: self._listen(ctx, params))

    async def _on_list_prompts(
        self, ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListPromptsResult:
        return mcp_types.ListPromptsResult(prompts=await self.federation.list_prompts(self.gateway.access()))

    async def _on_completion(
        self, ctx: ServerRequestContext[Any], params: mcp_types.CompleteRequestParams
    ) -> mcp_types.CompleteResult:
        argument = {"name": params.argument.name, "value": params.argument.value}
        return await self.federation.complete(params.ref, argument, self.gateway.access())

    async def _on_get_prompt(
        self, ctx: ServerRequestContext[Any], params: mcp_types.GetPromptRequestParams
    ) -> mcp_types.GetPromptResult:
        with self.gateway.ops.audited("prompt_get", params.name):
            return await self.federation.get_prompt(params.name, params.arguments, self.gateway.access())

    # --- upstream log messages, forwarded to clients --------------------------------------------

    async def _on_set_level(
        self, ctx: ServerRequestContext[Any], params: mcp_types.SetLevelRequestParams
    ) -> mcp_types.EmptyResult:
        connection = self._remember(ctx)
        if connection is not None:
            self._log_levels[connection] = params.level
        return mcp_types.EmptyResult()

    def _remember(self, ctx: ServerRequestContext[Any]) -> object | None:
        """Keep the session of a handshake-era connection, to send it notices later; return the connection.

        Connections of any era are kept too (weakly, for HTTP by session id), for the lean path's calls.
        """
        connection: object | None = getattr(ctx.session, "_connection", None)
        if connection is not None:
            self._last_connection = weakref.ref(connection)
            session_id = ctx.request.headers.get("mcp-session-id") if ctx.request is not None else None
            if session_id:
                self._http_connections[session_id] = connection
        if connection is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            if connection not in self._sessions:
                on_close(connection, self._forget)
            self._sessions[connection] = ctx.session
            return connection
        return None

    def _forget(self, connection: object) -> None:
        """Drop what is kept for a connection that closed."""
        self._sessions.pop(connection, None)
        self._log_levels.pop(connection, None)

    def _listen_to_upstreams(self) -> None:
        for backend in self.federation.backends():
            if isinstance(backend, LogSource):
                backend.set_log_listener(self._on_upstream_log)

    async def _on_upstream_log(
        self, backend: str, params: mcp_types.LoggingMessageNotificationParams, caller: CallContext
    ) -> None:
        """Forward an upstream's log message to the client whose call it belongs to, on that call's request.

        The backend names the one call a message belongs to, and keeps (counts) the ones it cannot match:
        a message never goes to a client other than the caller. Only where the client's log level admits it.
        """
        if caller.peer is None:
            return
        rank = _LOG_LEVELS.index(params.level)
        source = f"{backend}.{params.logger}" if params.logger else backend
        connection = getattr(caller.peer, "_connection", None)
        if connection is not None and rank < _LOG_LEVELS.index(self._log_levels.get(connection, "info")):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await caller.peer.send_log_message(
                    params.level, params.data, logger=source, related_request_id=caller.request_id
                )
        except Exception as exc:  # the caller may be gone; a log line is not worth failing over
            logger.debug("could not forward a log message to its caller: %s", exc)

    def _on_tools_changed(self) -> None:
        self._listen_to_upstreams()
        offered = self._offered_names()  # meta-tools come and go with what they can do (skill tools with skills)
        if self._passthrough or self._surfaced or offered != self._offered:
            self._offered = offered
            self._changed.set()

    def _offered_names(self) -> tuple[str, ...]:
        return tuple(tool.name for tool in offered_meta_tools(self.gateway)) if self._meta else ()

    async def notify_changes(self, *, debounce: float = 0.1) -> None:
        """Send `notifications/tools/list_changed` to connected clients after catalog changes (debounced).

        Run it next to the server, in the same task group; it never returns.
        """
        while True:
            await self._changed.wait()
            await anyio.sleep(debounce)
            self._changed = anyio.Event()
            await self._bus.publish(ToolsListChanged())
            for connection, session in list(self._sessions.items()):
                try:
                    await session.send_tool_list_changed()
                except Exception as exc:  # a client that went away must not stop the others' notices
                    logger.debug("could not notify a session of a tool list change: %s", exc)
                    self._sessions.pop(connection, None)

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        self._remember(ctx)
        close_stream = ctx.close_sse_stream
        if self._poll_after is None or close_stream is None:
            return await self._dispatch(params.name, params.arguments, _call_context(ctx))
        # A long call lets go of its HTTP stream; the client resumes it (Last-Event-ID) and gets the answer.
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call_later, self._poll_after, close_stream)
            result = await self._dispatch(params.name, params.arguments, _call_context(ctx))
            tg.cancel_scope.cancel()
        return result

    def lean_call(self, params: Any, notify: Notify) -> Coroutine[Any, Any, dict[str, Any]] | None:
        """The lean path for a `tools/call` read off stdio: the result as wire JSON, or None for the SDK's path.

        It takes what it answers exactly as the SDK would (`lean.parse`) on a connection it has seen (the
        first request of a connection goes the SDK's way).
        """
        request = lean.parse(params)
        connection = self._last_connection() if self._last_connection is not None else None
        if request is None or connection is None or not lean.ready(connection):
            return None  # (the SDK's path refuses a call before the handshake is complete)
        if not request.modern and lean.known_handshake_version(connection) is None:
            return None
        return self._lean_result(request, LeanPeer(connection, notify, logs=not request.modern), notify)

    def lean_http_call(
        self, session_id: str, version: str, params: Any, notify: Notify
    ) -> Coroutine[Any, Any, dict[str, Any]] | None:
        """The lean path for a `tools/call` POSTed on a handshake-era HTTP session (see `lean_call`)."""
        request = lean.parse(params)
        connection = self._http_connections.get(session_id)
        if request is None or request.modern or connection is None or not lean.ready(connection):
            return None
        if lean.known_handshake_version(connection) != version:
            return None
        return self._lean_result(request, LeanPeer(connection, notify, logs=True), notify)

    def lean_modern_call(self, version: str, params: Any, notify: Notify) -> Coroutine[Any, Any, dict[str, Any]] | None:
        """The lean path for a 2026-07-28 `tools/call` over HTTP (no session, so no caller to ask things)."""
        request = lean.parse(params)
        if request is None or request.envelope_version != version:
            return None
        return self._lean_result(request, None, notify)

    async def _lean_result(self, request: lean.LeanRequest, peer: LeanPeer | None, notify: Notify) -> dict[str, Any]:
        call = CallContext(progress=lean.progress_reporter(request.progress_token, notify), peer=peer)
        answer = await self._dispatch(request.name, request.arguments, call)
        result = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        if request.modern:
            result["resultType"] = "complete"
            result["_meta"] = {mcp_types.SERVER_INFO_META_KEY: self.server.server_info_stamp}
        else:
            result.pop("resultType", None)  # 2026-07-28 vocabulary, which the SDK sieves out for older versions
        return result

    async def drain(self, grace: float) -> None:
        """Stop taking tool calls, let those in flight finish for up to `grace` seconds, then stop the rest.

        Every call gets an answer: its own result when it finishes in time, else a `shutting_down` error
        (as does every call that arrives meanwhile). Returns once each has its answer.
        """
        self._stopping = True
        with anyio.move_on_after(grace):
            await self._until_no_calls()
        if self._calls:
            logger.info("stopping %d call(s) still running after %g s", len(self._calls), grace)
            for scope in list(self._calls):
                scope.cancel()
            with anyio.move_on_after(5):
                await self._until_no_calls()

    async def _until_no_calls(self) -> None:
        while self._calls:
            self._no_calls = anyio.Event()
            await self._no_calls.wait()

    async def _dispatch(
        self, name: str, arguments: dict[str, Any] | None, call: CallContext
    ) -> mcp_types.CallToolResult:
        """Run one tool call, answering it even when the gateway stops (see `drain`)."""
        if self._stopping:
            return error_result(ShuttingDownError(_NOT_TAKEN, op=name))
        scope = anyio.CancelScope()
        self._calls.add(scope)
        try:
            with scope:
                return await self._run_call(name, arguments, call)
            return error_result(ShuttingDownError(_STOPPED, op=name))  # cancelled by `drain` only
        finally:
            self._calls.discard(scope)
            if not self._calls:
                self._no_calls.set()

    async def _run_call(
        self, name: str, arguments: dict[str, Any] | None, call: CallContext
    ) -> mcp_types.CallToolResult:
        """Run one tool call; every failure becomes an `isError` result the model can read."""
        meta = offered_meta_tool(self.gateway, name) if self._meta else None
        try:
            if meta is None:
                route = self.exposure(self.gateway.access()).routes.get(name)
                if route is not None:
                    return passthrough_result(await self.gateway.run(route, arguments, call))
                raise UnknownToolError(name, self._known_names(name))
            answer = await meta.call(self.gateway, call, arguments)
            if isinstance(answer, RunResult):
                return run_result(answer)
            if isinstance(answer, dict):
                return json_result(answer)
            return json_result(answer.to_dict(), is_error=answer.is_error)
        except ApertureError as error:
            error.op = error.op or name
            return error_result(error)
        except Exception as exc:  # the surface boundary: log it, answer with an internal error, keep serving
            logger.exception("meta-tool %s failed", name)
            return error_result(internal_failure(name, exc))

    def _known_names(self, name: str) -> list[str]:
        names = [t.name for t in offered_meta_tools(self.gateway)] if self._meta else []
        access = self.gateway.access()
        routes = self.exposure(access).routes
        if access.unrestricted:
            names += list(routes)
        else:  # suggest only tools the caller may run
            visible = self.gateway.ops.visible_tools()
            names += [route for route, key in routes.items() if key in visible]
        return difflib.get_close_matches(name, names, n=3, cutoff=0.5) or names[:3]


async def _call_later(delay: float, action: Callable[[], Awaitable[None]]) -> None:
    await anyio.sleep(delay)
    await action()


def _handshake_done(session: ServerSession) -> bool:
    connection = getattr(session, "_connection", None)  # the SDK offers no public handle on it
    return connection is None or lean.ready(connection)


def _call_context(ctx: ServerRequestContext[Any]) -> CallContext:
    # `report_progress` is a no-op when the caller did not ask; whether it did is not always visible in
    # `_meta` (the in-process dispatcher passes a callback), so it is always handed on.
    return CallContext(progress=ctx.session.report_progress, request_id=str(ctx.request_id), peer=ctx.session)
