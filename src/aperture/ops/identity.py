"""Who is calling: the `Identity` a call runs as, and where the call's identity is found."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from aperture.execution import CallContext
from aperture.model import ConfigError
from aperture.ops.settings import AuthSettings

IDENTITY_KEY = "aperture.identity"
"""Where a surface puts the caller's `Identity`: in `CallContext.meta`, and in an ASGI request's scope."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """An authenticated caller: a name for logs and limits, the roles and scopes that rules check, and the
    toolsets its credential itself is bound to (an API key's, a token's claim; roles may bind more)."""

    name: str
    method: str = "local"
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    toolsets: tuple[str, ...] = ()

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


def local_identity(auth: AuthSettings, environ: Mapping[str, str] = os.environ) -> Identity:
    """Who stdio and in-process callers are: the holder of the API key in `auth.local_key_env` when it is
    set, else the anonymous local caller with `auth.local_roles`.

    Raises:
        ConfigError: the variable holds a key that matches none of `auth.api_keys` (a typo must not
            quietly fall back to other rights).
    """
    key = environ.get(auth.local_key_env) if auth.local_key_env else None
    if not key:
        return Identity(name="local", method="local", roles=frozenset(auth.local_roles))
    digest = hashlib.sha256(key.encode()).hexdigest()
    for entry in auth.api_keys:
        if entry.sha256 == digest:
            return Identity(
                name=entry.name, method="api_key", roles=frozenset(entry.roles), toolsets=tuple(entry.toolsets)
            )
    raise ConfigError(
        f"the environment variable {auth.local_key_env} holds an API key that matches none of ops.auth.api_keys; "
        f"give a configured key, or unset {auth.local_key_env} to run with ops.auth.local_roles"
    )
