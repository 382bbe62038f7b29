"""Resources and prompts of every upstream MCP server, listed together and routed to their owner.

Resource URIs are kept as the upstreams wrote them (tool results link to them, and clients read them
back unchanged); a URI is routed to the upstream that listed it, else to the one whose template matches
it. Prompt names collide easily ("summarize"), so they are listed as `namespace__name`, like passthrough
tools. Resource subscriptions go to the owning upstream, and its update notices come back to the
sessions that subscribed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

import mcp_types
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from aperture.execution import McpBackend
from aperture.execution.registry import BackendRegistry
from aperture.model import ApertureError
from aperture.surface.mcp.exposure import flat_name, plain_names
from aperture.surface.mcp.sessions import on_close

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
        self._prompts: dict[str, tuple[str, str]] = {}  # listed name -> (backend, upstream prompt name)
        # uri -> subscribed connections and their sessions; a connection's entries go when it closes.
        self._subscribers: dict[str, dict[object, ServerSession]] = {}
        self._watchers: dict[str, int] = {}  # uri -> handshake-era subscribers plus 2026 listen streams

    def upstreams(self) -> list[McpBackend]:
        backends = (self.registry.get(name) for name in self.registry.names())
        return [b for b in backends if isinstance(b, McpBackend)]

    # --- resources ------------------------------------------------------------------------------

    async def list_resources(self) -> list[mcp_types.Resource]:
        listed: list[mcp_types.Resource] = []
        owners: dict[str, str] = {}
        for backend in self.upstreams():
            for resource in await _quietly(backend.list_resources(), backend.name, "resources"):
                uri = str(resource.uri)
                if uri in owners:
                    logger.warning(
                        "resource %s is offered by %s and %s; the first wins", uri, owners[uri], backend.name
                    )
                    continue
                owners[uri] = backend.name
                listed.append(resource)
        self._owners = owners
        for backend in self.upstreams():
            backend.set_resource_listener(self._on_resource_updated)
        return listed

    async def list_templates(self) -> list[mcp_types.ResourceTemplate]:
        listed: list[mcp_types.ResourceTemplate] = []
        templates: list[tuple[UriTemplate, str]] = []
        for backend in self.upstreams():
            for template in await _quietly(backend.list_resource_templates(), backend.name, "resource templates"):
                listed.append(template)
                self._template_owners[template.uri_template] = backend.name
                try:
                    templates.append((UriTemplate.parse(template.uri_template), backend.name))
                except InvalidUriTemplate:
                    logger.warning("backend %s: unusable URI template %s", backend.name, template.uri_template)
        self._templates = templates
        return listed

    async def owner_of(self, uri: str) -> McpBackend:
        """The upstream a URI belongs to: the one that listed it, else the one whose template matches.

        Raises:
            MCPError: INVALID_PARAMS, saying no upstream offers the URI.
        """
        if uri not in self._owners and not any(t.match(uri) is not None for t, _ in self._templates):
            await self.list_resources()
            await self.list_templates()
        name = self._owners.get(uri) or next((owner for t, owner in self._templates if t.match(uri) is not None), None)
        backend = self.registry.get(name) if name else None
        if not isinstance(backend, McpBackend):
            raise MCPError(
                code=mcp_types.INVALID_PARAMS,
                message=f"No upstream offers the resource {uri!r}; resources/list shows what is available.",
            )
        return backend

    async def read(self, uri: str) -> mcp_types.ReadResourceResult:
        backend = await self.owner_of(uri)
        try:
            return await backend.read_resource(uri)
        except ApertureError as error:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=error.message) from error

    async def subscribe(self, uri: str, session: ServerSession, *, subscribe: bool = True) -> None:
        """A handshake-era client's `resources/subscribe` (or unsubscribe)."""
        connection = getattr(session, "_connection", session)
        subscribers = self._subscribers.setdefault(uri, {})
        if subscribe and connection not in subscribers:
            await self.watch(uri)
            if not any(connection in s for s in self._subscribers.values()):
                on_close(connection, self._unsubscribe_all)
            subscribers[connection] = session
        elif not subscribe and connection in subscribers:
            subscribers.pop(connection, None)
            await self.watch(uri, watch=False)

    async def _unsubscribe_all(self, connection: object) -> None:
        """A closed connection's subscriptions end (the upstream is unsubscribed once no one watches)."""
        for uri, subscribers in list(self._subscribers.items()):
            if subscribers.pop(connection, None) is not None:
                with contextlib.suppress(MCPError, ApertureError):
                    await self.watch(uri, watch=False)
            if not subscribers:
                self._subscribers.pop(uri, None)

    async def watch(self, uri: str, *, watch: bool = True) -> None:
        """Count one more (or one fewer) watcher of `uri`; the owning upstream is subscribed while any watch.

        Raises:
            MCPError: INVALID_PARAMS when no upstream offers the URI.
        """
        backend = await self.owner_of(uri)
        count = self._watchers.get(uri, 0) + (1 if watch else -1)
        self._watchers[uri] = max(0, count)
        if watch and count == 1:
            await backend.subscribe_resource(uri)
        elif not watch and count == 0:
            await backend.subscribe_resource(uri, subscribe=False)

    async def _on_resource_updated(self, backend: str, uri: str) -> None:
        if self.bus is not None:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for connection, session in list(self._subscribers.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # a subscriber that went away must not stop the others' notices
                logger.debug("could not tell a subscriber that %s changed: %s", uri, exc)
                self._subscribers.get(uri, {}).pop(connection, None)

    # --- prompts --------------------------------------------------------------------------------

    async def list_prompts(self) -> list[mcp_types.Prompt]:
        found: list[tuple[str, mcp_types.Prompt]] = []
        for backend in self.upstreams():
            found += [(backend.name, p) for p in await _quietly(backend.list_prompts(), backend.name, "prompts")]
        keys = [f"{owner}:{prompt.name}" for owner, prompt in found]
        plain = {} if self.namespaced else plain_names(keys, self.separator)
        listed: list[mcp_types.Prompt] = []
        routes: dict[str, tuple[str, str]] = {}
        for key, (owner, prompt) in zip(keys, found, strict=True):
            name = plain.get(key) or flat_name(key, self.separator)
            routes[name] = (owner, prompt.name)
            listed.append(prompt.model_copy(update={"name": name}))
        self._prompts = routes
        return listed

    async def complete(
        self, ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference, argument: dict[str, str]
    ) -> mcp_types.CompleteResult:
        """Completions from the upstream that owns the prompt or resource template (none when unknown)."""
        backend_name: str | None = None
        if isinstance(ref, mcp_types.PromptReference):
            if ref.name not in self._prompts:
                await self.list_prompts()
            route = self._prompts.get(ref.name)
            if route is not None:
                backend_name, upstream_name = route
                ref = ref.model_copy(update={"name": upstream_name})
        else:
            if ref.uri not in self._template_owners:
                await self.list_templates()
            backend_name = self._template_owners.get(str(ref.uri))
        backend = self.registry.get(backend_name) if backend_name else None
        if not isinstance(backend, McpBackend):
            return mcp_types.CompleteResult(completion=mcp_types.Completion(values=[]))
        try:
            return await backend.complete(ref, argument)
        except ApertureError as error:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=error.message) from error

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> mcp_types.GetPromptResult:
        if name not in self._prompts:
            await self.list_prompts()
        route = self._prompts.get(name)
        backend = self.registry.get(route[0]) if route else None
        if route is None or not isinstance(backend, McpBackend):
            known = ", ".join(list(self._prompts)[:10]) or "none"
            raise MCPError(code=mcp_types.INVALID_PARAMS, message=f"No prompt {name!r}. Prompts: {known}.")
        try:
            return await backend.get_prompt(route[1], arguments)
        except ApertureError as error:
            raise MCPError(code=mcp_types.INTERNAL_ERROR, message=error.message) from error


async def _quietly(listing: Awaitable[list[T]], backend: str, what: str) -> list[T]:
    """Await one upstream's listing; a failing upstream is skipped (and logged), never hides the others."""
    try:
        return await listing
    except (ApertureError, MCPError) as exc:
        logger.warning("backend %s: listing %s failed: %s", backend, what, exc)
        return []
