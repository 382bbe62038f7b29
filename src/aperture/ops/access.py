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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aperture.ops.identity import LOCAL, Identity

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

    @property
    def unrestricted(self) -> bool:
        """True when no rules apply (auth is off): every check passes, and callers may skip filtering."""
        return self.allows is None

    def _check(self, key: str) -> bool:
        return self.allows is None or self.allows(self.identity, key)

    def may_see_tool(self, tool_id: str) -> bool:
        """May the caller see (and so run) the tool `tool_id` (`namespace:name`)?"""
        return self._check(tool_id)

    def may_see_namespace(self, namespace: str) -> bool:
        """Is `namespace` not forbidden as a whole (no rule covering `namespace:*` forbids it)?"""
        return self._check(f"{namespace}:*")

    def may_use_prompt(self, backend: str, name: str) -> bool:
        """May the caller list, get and complete the prompt `name` (the upstream's own name) of `backend`?"""
        return self._check(f"{backend}:{name}")

    def may_read_resource(self, backend: str, uri: str) -> bool:
        """May the caller list, read, subscribe to and hear of changes to `uri`, owned by `backend`?"""
        return self._check(f"{backend}:{uri}")

    def may_see_template(self, backend: str, uri_template: str) -> bool:
        """May the caller list, and complete arguments of, the resource template `uri_template` of `backend`?"""
        return self._check(f"{backend}:{uri_template}")


OPEN = Access()
"""The view without auth rules: everything."""
