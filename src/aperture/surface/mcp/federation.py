"""Resources and prompts of every upstream MCP server, listed together and routed to their owner.

Resource URIs are kept as the upstreams wrote them (tool results link to them, and clients read them
back unchanged); a URI is routed to the upstream that listed it, else to the one whose template matches
it. Prompt names collide easily ("summarize"), so they are listed as `namespace__name`, like passthrough
tools. Resource subscriptions go to the owning upstream, and its update notices come back to the
sessions that subscribed.

Every method takes the caller's `Access` (the gateway's one answer to "what may this caller see"): what it
hides is left out of listings and notices, and a request for it gets the error of an unknown one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TypeVar

import anyio
import mcp_types
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, ServerEvent, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from aperture.execution import Backend, CompletionSource, PromptSource, ResourceNotifier, ResourceSource, ToolResources
from aperture.execution.registry import BackendRegistry
from aperture.model import ApertureError, ErrorCode
from aperture.ops.access import OPEN, Access
from aperture.surface.mcp.exposure import flat_name, plain_names
from aperture.surface.mcp.sessions import on_close

logger = logging.getLogger(__name__)
T = TypeVar("T")

RELIST_EVERY = 1.0
"""Seconds between listings of the upstreams made because a lookup missed (an unknown or hidden resource,
template or prompt): a flood of misses must not become a flood of listings upstream."""

_listening_as: ContextVar[Access | None] = ContextVar("aperture_listening_as", default=None)
"""The caller of the listen stream being opened (set by `Federation.listen` around the SDK's handler)."""


class Federation:
    """The resources and prompts side of the gateway's MCP surface."""

    def __init__(
        self,
        registry: BackendRegistry,
        *,
        separator: str = "__",
        namespaced: bool = True,
        bus: SubscriptionBus | None = None,
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.separator = separator
        self.namespaced = namespaced
        self._owners: dict[str, str] = {}  # resource uri -> backend name
        self._templates: list[tuple[UriTemplate, str]] = []
        self._template_owners: dict[str, str] = {}  # uri template as listed -> backend name
        self._found: list[tuple[str, mcp_types.Prompt]] = []  # (backend, prompt as it lists it), as last listed
        # uri -> subscribed connections and (their sessions, what their callers may see); a connection's
        # entries go when it closes.
        self._subscribers: dict[str, dict[object, tuple[ServerSession, Access]]] = {}
        self._watchers: dict[str, int] = {}  # uri -> handshake-era subscribers plus 2026 listen streams
        self._relisted_at: dict[str, float] = {}  # "resources", "templates", "prompts" -> last listed for a miss
        self._relisting: dict[str, anyio.Lock] = {}

    def backends(self) -> list[Backend]:
        """Every registered backend; what each offers is asked of it by protocol (`execution.backend`)."""
        return [backend for name in self.registry.names() if (backend := self.registry.get(name)) is not None]

    def sources(self) -> list[ResourceSource]:
        """Every backend offering resources: the upstreams, and others such as the skills (their files)."""
        return [backend for backend in self.backends() if isinstance(backend, ResourceSource)]

    def _may_read(self, access: Access, owner: str, uri: str) -> bool:
        """May the caller read `uri` of `owner`: by the rules on resources and, for a resource that belongs to a
        tool (a skill's file), on that tool too."""
        if access.unrestricted:
            return True
        if not access.may_read_resource(owner, uri):
            return False
        backend = self.registry.get(owner)
        tool = backend.resource_tool(uri) if isinstance(backend, ToolResources) else None
        return tool is None or access.may_see_tool(tool)

    # --- resources ------------------------------------------------------------------------------

    async def list_resources(self, access: Access) -> list[mcp_types.Resource]:
        """Every upstream's resources that the caller may read."""
        listed = await self._list_resources()
        return [resource for owner, resource in listed if self._may_read(access, owner, str(resource.uri))]

    async def _list_resources(self) -> list[tuple[str, mcp_types.Resource]]:
        listed: list[tuple[str, mcp_types.Resource]] = []
        owners: dict[str, str] = {}
        for backend in self.sources():
            for resource in await _quietly(backend.list_resources(), backend.name, "resources"):
                uri = str(resource.uri)
                if uri in owners:
                    logger.warning(
                        "resource %s is offered by %s and %s; the first wins", uri, owners[uri], backend.name
                    )
                    continue
                owners[uri] = backend.name
                listed.append((backend.name, resource))
        self._owners = owners
        for notifier in self.backends():
            if isinstance(notifier, ResourceNotifier):
                notifier.set_resource_listener(self._on_resource_updated)
        return listed

    async def list_templates(self, access: Access) -> list[mcp_types.ResourceTemplate]:
        """Every upstream's resource templates that the caller may see."""
        listed = await self._list_templates()
        return [template for owner, template in listed if access.may_see_template(owner, template.uri_template)]

    async def _list_templates(self) -> list[tuple[str, mcp_types.ResourceTemplate]]:
        listed: list[tuple[str, mcp_types.ResourceTemplate]] = []
        templates: list[tuple[UriTemplate, str]] = []
        owners: dict[str, str] = {}
        for backend in self.sources():
            name = backend.name
            for template in await _quietly(backend.list_resource_templates(), name, "resource templates"):
                if template.uri_template in owners:  # the first wins, as for resources
                    continue
                owners[template.uri_template] = name
                listed.append((name, template))
                try:
                    templates.append((UriTemplate.parse(template.uri_template), name))
                except InvalidUriTemplate:
                    logger.warning("backend %s: unusable URI template %s", name, template.uri_template)
        self._templates = templates
        self._template_owners = owners
        return listed

    async def _relist_for_miss(self, what: str, listing: Callable[[], Awaitable[object]]) -> None:
        """List `what` again because a lookup missed, at most once per `RELIST_EVERY` seconds; a miss that
        comes while such a listing runs waits for it instead of starting another."""
        asked = anyio.current_time()
        async with self._relisting.setdefault(what, anyio.Lock()):
            last = self._relisted_at.get(what)
            if last is not None and (last >= asked or asked - last < RELIST_EVERY):
                return
            await listing()
            self._relisted_at[what] = anyio.current_time()

    def _owner_name(self, uri: str) -> str | None:
        """The backend a URI belongs to, as last listed: the one that listed it, else the one whose template
        matches it."""
        return self._owners.get(uri) or next((owner for t, owner in self._templates if t.match(uri) is not None), None)

    def readable(self, uri: str, access: Access) -> bool:
        """May the caller of `access` read `uri` (and hear that it changed), by what was last listed?"""
        if access.unrestricted:
            return True
        owner = self._owner_name(uri)
        return owner is not None and self._may_read(access, owner, uri)

    async def owner_of(self, uri: str, access: Access) -> ResourceSource:
        """The backend (an upstream, the skills) a URI belongs to, if the caller may read it.

        Raises:
            MCPError: INVALID_PARAMS, saying no upstream offers the URI (the same for one the caller may not
                read: it must not learn that the resource exists).
        """
        name = self._owner_name(uri)
        if name is None or not self._may_read(access, name, uri):  # a hidden URI costs what an unknown one does
            await self._relist_for_miss("resources", self._list_resources)
            await self._relist_for_miss("templates", self._list_templates)
            name = self._owner_name(uri)
        backend = self.registry.get(name) if name else None
        if name is None or not isinstance(backend, ResourceSource) or not self._may_read(access, name, uri):
            raise MCPError(
                code=mcp_types.INVALID_PARAMS,
                message=f"No upstream offers the resource {uri!r}; resources/list shows what is available.",
            )
        return backend

    async def read(self, uri: str, access: Access) -> mcp_types.ReadResourceResult:
        backend = await self.owner_of(uri, access)
        try:
            return await backend.read_resource(uri)
        except ApertureError as error:  # a request it refuses (a skill file outside its folder) is the caller's to fix
            code = mcp_types.INVALID_PARAMS if error.code == ErrorCode.INVALID_REQUEST else mcp_types.INTERNAL_ERROR
            raise MCPError(code=code, message=error.message) from error

    async def subscribe(self, uri: str, session: ServerSession, access: Access, *, subscribe: bool = True) -> None:
        """A handshake-era client's `resources/subscribe` (or unsubscribe).

        Raises:
            MCPError: INVALID_PARAMS when subscribing to a URI no upstream offers, or one the caller may not read.
        """
        connection = getattr(session, "_connection", session)
        subscribers = self._subscribers.setdefault(uri, {})
        if subscribe and connection not in subscribers:
            await self.watch(uri, access)
            if not any(connection in s for s in self._subscribers.values()):
                on_close(connection, self._unsubscribe_all)
            subscribers[connection] = (session, access)
        elif not subscribe and connection in subscribers:
            subscribers.pop(connection, None)
            await self.unwatch(uri)

    async def _unsubscribe_all(self, connection: object) -> None:
        """A closed connection's subscriptions end (the upstream is unsubscribed once no one watches)."""
        for uri, subscribers in list(self._subscribers.items()):
            if subscribers.pop(connection, None) is not None:
                with contextlib.suppress(MCPError, ApertureError):
                    await self.unwatch(uri)
            if not subscribers:
                self._subscribers.pop(uri, None)

    async def watch(self, uri: str, access: Access) -> None:
        """Count one more watcher of `uri`; the owning upstream is subscribed while any watch.

        Raises:
            MCPError: INVALID_PARAMS when no upstream offers the URI, or the caller may not read it.
        """
        backend = await self.owner_of(uri, access)
        count = self._watchers.get(uri, 0) + 1
        self._watchers[uri] = count
        if count == 1:
            await backend.subscribe_resource(uri)

    async def unwatch(self, uri: str) -> None:
        """Count one fewer watcher of `uri` (one `watch` counted); the last one unsubscribes the upstream."""
        count = max(0, self._watchers.get(uri, 0) - 1)
        self._watchers[uri] = count
        if count == 0:
            backend = await self.owner_of(uri, OPEN)
            await backend.subscribe_resource(uri, subscribe=False)

    async def listen(self, uris: Sequence[str], access: Access, serve: Callable[[], Awaitable[T]]) -> T:
        """Serve a 2026-07-28 client's listen stream (`serve`, the SDK's handler) as the caller of `access`.

        The upstreams owning the watched resources the caller may read are subscribed for as long as it
        listens; a URI no upstream offers, or that the caller may not read, is acknowledged like any other and
        never heard of (the stream's bus, `VisibleBus`, drops its notices).
        """
        watched = []
        for uri in uris:
            try:
                await self.watch(uri, access)
                watched.append(uri)
            except MCPError as exc:
                logger.info("listen: not watching %s: %s", uri, exc.message)
        token = _listening_as.set(access)
        try:
            return await serve()
        finally:
            _listening_as.reset(token)
            with anyio.CancelScope(shield=True):
                for uri in watched:
                    with contextlib.suppress(MCPError, ApertureError):
                        await self.unwatch(uri)

    async def _on_resource_updated(self, backend: str, uri: str) -> None:
        if self.bus is not None:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for connection, (session, access) in list(self._subscribers.get(uri, {}).items()):
            if not self.readable(uri, access):
                continue
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # a subscriber that went away must not stop the others' notices
                logger.debug("could not tell a subscriber that %s changed: %s", uri, exc)
                self._subscribers.get(uri, {}).pop(connection, None)

    # --- prompts --------------------------------------------------------------------------------

    async def list_prompts(self, access: Access) -> list[mcp_types.Prompt]:
        """Every upstream's prompts that the caller may use, under their listed names."""
        await self._list_prompts()
        usable = [(owner, prompt) for owner, prompt in self._found if access.may_use_prompt(owner, prompt.name)]
        names = self._names(usable)
        return [prompt.model_copy(update={"name": name}) for name, (_, prompt) in zip(names, usable, strict=True)]

    async def _list_prompts(self) -> None:
        found: list[tuple[str, mcp_types.Prompt]] = []
        for backend in (b for b in self.backends() if isinstance(b, PromptSource)):
            found += [(backend.name, p) for p in await _quietly(backend.list_prompts(), backend.name, "prompts")]
        self._found = found

    def _names(self, prompts: list[tuple[str, mcp_types.Prompt]]) -> list[str]:
        """The listed names of `prompts` (of one caller): `backend__name`, or with `namespaced: false` the bare
        name where it is unique among them, so a prompt the caller may not use never changes another's name."""
        keys = [f"{owner}:{prompt.name}" for owner, prompt in prompts]
        plain = {} if self.namespaced else plain_names(keys, self.separator)
        return [plain.get(key) or flat_name(key, self.separator) for key in keys]

    def _routes(self, access: Access) -> dict[str, tuple[str, str]]:
        """The caller's listed prompt name -> (backend, upstream prompt name), as last listed."""
        usable = [(owner, prompt) for owner, prompt in self._found if access.may_use_prompt(owner, prompt.name)]
        return {name: (owner, prompt.name) for name, (owner, prompt) in zip(self._names(usable), usable, strict=True)}

    async def _prompt_route(self, name: str, access: Access) -> tuple[str, str] | None:
        """(backend, upstream name) of the prompt the caller knows as `name`; None for one it may not use or
        that is not listed (both relist the upstreams, so neither answers faster)."""
        route = self._routes(access).get(name)
        if route is None:
            await self._relist_for_miss("prompts", self._list_prompts)
            route = self._routes(access).get(name)
        return route

    async def complete(
        self,
        ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
        argument: dict[str, str],
        access: Access,
    ) -> mcp_types.CompleteResult:
        """Completions from the upstream that owns the prompt or resource template (none when unknown, or
        when the caller may not see it)."""
        backend_name: str | None = None
        if isinstance(ref, mcp_types.PromptReference):
            route = await self._prompt_route(ref.name, access)
            if route is not None:
                backend_name, upstream_name = route
                ref = ref.model_copy(update={"name": upstream_name})
        else:
            template = str(ref.uri)
            owner = self._template_owners.get(template)
            if owner is None or not access.may_see_template(owner, template):  # hidden: as costly as unknown
                await self._relist_for_miss("templates", self._list_templates)
                owner = self._template_owners.get(template)
            backend_name = owner if owner is not None and access.may_see_template(owner, template) else None
        backend = self.registry.get(backend_name) if backend_name else None
        if not isinstance(backend, CompletionSource):
            return mcp_types.CompleteResult(completion=mcp_types.Completion(values=[]))
        try:
            return await backend.complete(ref, argument)
        except ApertureError as error:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=error.message) from error

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, access: Access
    ) -> mcp_types.GetPromptResult:
        """The prompt from its upstream.

        Raises:
            MCPError: INVALID_PARAMS for a prompt that is not listed, or that the caller may not use (the same
                error, naming only prompts the caller may use).
        """
        route = await self._prompt_route(name, access)
        backend = self.registry.get(route[0]) if route else None
        if route is None or not isinstance(backend, PromptSource):
            known = ", ".join(list(self._routes(access))[:10]) or "none"
            raise MCPError(code=mcp_types.INVALID_PARAMS, message=f"No prompt {name!r}. Prompts: {known}.")
        try:
            return await backend.get_prompt(route[1], arguments)
        except ApertureError as error:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=error.message) from error


class VisibleBus:
    """The subscription bus as each listen stream sees it: resource notices only for what its caller may read.

    The SDK's `ListenHandler` registers a stream's listener from the stream's own request, inside
    `Federation.listen`, which holds the caller's `Access` there. A listener registered any other way hears of
    no resource at all (closed, not open, if the SDK changes how it registers).
    """

    def __init__(self, bus: SubscriptionBus, readable: Callable[[str, Access], bool]) -> None:
        self._bus = bus
        self._readable = readable

    async def publish(self, event: ServerEvent) -> None:
        await self._bus.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        access = _listening_as.get()
        if access is not None and access.unrestricted:
            return self._bus.subscribe(listener)
        if access is None:
            logger.warning("a listen stream was opened outside Federation.listen: it hears of no resource")
        readable = self._readable

        def visible(event: ServerEvent) -> None:
            if isinstance(event, ResourceUpdated) and (access is None or not readable(event.uri, access)):
                return
            listener(event)

        return self._bus.subscribe(visible)


async def _quietly(listing: Awaitable[list[T]], backend: str, what: str) -> list[T]:
    """Await one upstream's listing; a failing upstream is skipped (and logged), never hides the others."""
    try:
        return await listing
    except (ApertureError, MCPError) as exc:
        logger.warning("backend %s: listing %s failed: %s", backend, what, exc)
        return []
