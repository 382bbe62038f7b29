"""Who is calling: the `Identity` a call runs as, and where the call's identity is found."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from aperture.execution import CallContext

IDENTITY_KEY = "aperture.identity"
"""Where a surface puts the caller's `Identity`: in `CallContext.meta`, and in an ASGI request's scope."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """An authenticated caller: a name for logs and limits, and the roles and scopes that rules check."""

    name: str
    method: str = "local"
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)

    def allows(self, roles: list[str], scopes: list[str]) -> bool:
        """True when this caller has one of `roles` or one of `scopes` (or the wildcard role '*')."""
        if "*" in self.roles:
            return True
        return bool(self.roles.intersection(roles) or self.scopes.intersection(scopes))


LOCAL = Identity(name="local", method="local", roles=frozenset({"*"}))
current_identity: ContextVar[Identity | None] = ContextVar("aperture_identity", default=None)
"""The identity of the request being served, set by the HTTP auth layer (and by surfaces per call)."""


def identity_of(ctx: CallContext, local: Identity = LOCAL) -> Identity:
    """The identity a call runs as: from its context, else the request being served, else `local`."""
    found = ctx.meta.get(IDENTITY_KEY) if ctx.meta else None
    if isinstance(found, Identity):
        return found
    return current_identity.get() or local
