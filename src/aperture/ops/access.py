"""What one caller may see and reach, by the auth rules: tools, namespaces, prompts, resources, templates.

This is the single seam every surface path asks (through `Gateway.access`): tool listings and calls,
resources, resource templates, prompts, completion, subscriptions and listen streams. Later views (toolsets,
code mode, other surfaces) extend it rather than checking the rules themselves.

The rules are globs on ids of the form `namespace:name`, and each kind of thing is checked under such an id:

- a tool as its id, `github:create_issue`;
- a whole namespace as `github:*` (hidden when a rule covering that literal id forbids it);
- a prompt as `backend:prompt` with the upstream's own prompt name (`docs:summarize`);
- a resource as `backend:uri` with the URI as the upstream wrote it (`docs:file:///notes/a.md`), where the
  backend is the upstream that owns it;
- a resource template as `backend:template`, the template as listed (`docs:file:///notes/{name}`).

So a rule `secret:*` hides all of namespace `secret`: its tools, prompts, resources and templates; a rule
`docs:file:///private/*` only the matching resources of `docs`.

A toolset view (`aperture.compose.toolsets`) narrows this further: the caller sees only the view's tools, under
the ids the view gives them, and the prompts, resources and templates of the namespaces those tools are in.
Which view applies is the operations layer's decision (`Ops.access`), from the toolset the request names
(`current_toolset`, set by the surface) and the caller's bindings.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aperture.compose import ToolsetView
from aperture.model import Tool, ToolSummary
from aperture.ops.identity import LOCAL, Identity

TOOLSET_KEY = "aperture.toolset"
"""Where a surface may put the name of the toolset a call came through, in `CallContext.meta`."""
SURFACE_KEY = "aperture.surface"
"""Where a surface other than MCP names itself in `CallContext.meta` (`a2a`): spans, metrics and call logs then
carry it as `surface` (calls without it came through MCP)."""
current_toolset: ContextVar[str | None] = ContextVar("aperture_toolset", default=None)
"""The toolset the request being served came through (`/mcp/{toolset}`, `serve --toolset`), set by the surface."""


def toolset_of(ctx: Any = None) -> str | None:
    """The toolset a call came through: from its context's meta, else the request being served."""
    meta = getattr(ctx, "meta", None)
    found = meta.get(TOOLSET_KEY) if meta else None
    return found if isinstance(found, str) else current_toolset.get()


Allows = Callable[[Identity, str], bool]
"""`allows(identity, id)`: whether the rules let `identity` see and use the thing under `id`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """One caller's view: what `identity` may see and reach. Without rules (`allows` None) everything.

    A thing the caller may not see must look to it exactly like one that does not exist: surfaces leave it out
    of listings, suggestions and notices, and answer a request for it with the error of an unknown one.
    """

    identity: Identity = LOCAL
    allows: Allows | None = None
    view: ToolsetView | None = None
    """The toolset view the caller is confined to (None: the whole catalog)."""

    @property
    def unrestricted(self) -> bool:
        """True when no rules and no toolset view apply: every check passes, and callers may skip filtering."""
        return self.allows is None and self.view is None

    @property
    def rights(self) -> Hashable:
        """What decides this caller's answers: the roles and scopes that rules check, and the view's toolsets.
        Callers with equal rights see the same tools (masks, listings and cursors are kept by it)."""
        rules = None if self.allows is None else (self.identity.roles, self.identity.scopes)
        return rules if self.view is None else (rules, self.view.names)

    def _check(self, key: str) -> bool:
        return self.allows is None or self.allows(self.identity, key)

    def _in_view(self, namespace: str) -> bool:
        return self.view is None or self.view.covers(namespace)

    def may_see_tool(self, tool_id: str) -> bool:
        """May the caller see (and so run) the catalog's tool `tool_id` (`namespace:name`, the catalog's id,
        not a view's new one)?"""
        return (self.view is None or tool_id in self.view.keys) and self._check(tool_id)

    def may_see_namespace(self, namespace: str) -> bool:
        """Is `namespace` not forbidden as a whole (no rule covering `namespace:*` forbids it, and it is in
        the caller's toolset view, if it has one)?"""
        return self._in_view(namespace) and self._check(f"{namespace}:*")

    def may_use_prompt(self, backend: str, name: str) -> bool:
        """May the caller list, get and complete the prompt `name` (the upstream's own name) of `backend`?"""
        return self._in_view(backend) and self._check(f"{backend}:{name}")

    def may_read_resource(self, backend: str, uri: str) -> bool:
        """May the caller list, read, subscribe to and hear of changes to `uri`, owned by `backend`?"""
        return self._in_view(backend) and self._check(f"{backend}:{uri}")

    def may_see_template(self, backend: str, uri_template: str) -> bool:
        """May the caller list, and complete arguments of, the resource template `uri_template` of `backend`?"""
        return self._in_view(backend) and self._check(f"{backend}:{uri_template}")

    def find(self, tool_id: str) -> str | None:
        """The catalog key of the tool the caller calls `tool_id` (a key, `namespace:name`, as the caller
        sees it: a view's new id for a renamed tool), if it may see it; None otherwise."""
        key = tool_id if self.view is None else self.view.resolve(tool_id)
        return key if key is not None and self._check(key) else None

    def find_absent(self, tool_id: str) -> str | None:
        """The catalog key `tool_id` would name for the caller if the catalog held it (its backend is down, say):
        where the caller's toolset view chooses it by the id alone and the rules allow it; None otherwise."""
        if self.view is None:
            return None
        key = self.view.absent_key(tool_id)
        return key if key is not None and self._check(key) else None

    def public_id(self, key: str) -> str:
        """The id the caller knows the catalog's tool `key` by."""
        return key if self.view is None else self.view.public_key(key)

    def present(self, tool: Tool) -> Tool:
        """The catalog's `tool` as the caller sees it (with its view's new id and description, if any)."""
        return tool if self.view is None else self.view.present(tool)

    def summarize(self, hit: ToolSummary) -> ToolSummary:
        """A search hit of the catalog as the caller sees it."""
        return hit if self.view is None else self.view.summarize(hit)


OPEN = Access()
"""The view without auth rules: everything."""
