"""Authentication (hashed API keys, JWT HS256 / RS256 / ES256 with a cached JWKS) and authorization (rules
per tool-id glob, applied to search, describe and run), and the audit record of every run (`ops.audit`)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import jwt

from aperture.execution import RunFn, RunResult, ToolCall
from aperture.model import (
    AuditUnavailableError,
    ForbiddenError,
    InvalidToolIdError,
    Tool,
    ToolId,
    UnauthorizedError,
    UnknownToolError,
)
from aperture.ops.access import Access, toolset_of
from aperture.ops.identity import Identity, identity_of
from aperture.ops.resilience import OnRefused, first_match
from aperture.ops.settings import AuthSettings, JwtSettings, RuleSettings

if TYPE_CHECKING:
    from aperture.ops.audit import AuditLog

logger = logging.getLogger(__name__)
_REFETCH_AFTER = 5.0  # seconds between JWKS fetches for unknown key ids, so bad tokens cannot hammer the issuer


class JwksCache:
    """Public keys from a JWKS URL, kept for `ttl` seconds; while the URL is down, known keys keep working."""

    def __init__(self, url: str, ttl: float, *, timeout: float = 3.0) -> None:
        self.url = url
        self.ttl = ttl
        self.timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._tried = 0.0
        self.last_error: str | None = None
        self._lock = anyio.Lock()

    async def key(self, kid: str | None) -> Any:
        """The verification key for `kid` (or the only key, without a kid).

        Raises:
            UnauthorizedError: the key is unknown (and, if so, the JWKS endpoint could not be reached).
        """
        now = time.monotonic()
        if now - self._fetched > self.ttl or (kid not in self._keys and now - self._tried > _REFETCH_AFTER):
            async with self._lock:
                if time.monotonic() - self._tried > min(_REFETCH_AFTER, self.ttl) or not self._fetched:
                    await self._refresh()
        found = self._keys.get(kid) if kid is not None else next(iter(self._keys.values()), None)
        if found is None:
            why = f"; the JWKS at {self.url} could not be fetched ({self.last_error})" if self.last_error else ""
            raise UnauthorizedError(f"The token's signing key {kid!r} is not one this server knows{why}.")
        return found

    async def _refresh(self) -> None:
        self._tried = time.monotonic()
        try:
            async with httpx2.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(response.json())
        except (httpx2.HTTPError, ValueError, jwt.PyJWTError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("JWKS %s unavailable, keeping %d cached keys: %s", self.url, len(self._keys), exc)
            return
        self._keys = {k.key_id or f"#{i}": k.key for i, k in enumerate(keyset.keys)}
        self._fetched = time.monotonic()
        self.last_error = None


class JwtVerifier:
    """Verifies bearer JWTs; a verified token is remembered (until it expires, at most a minute)."""

    def __init__(self, settings: JwtSettings) -> None:
        from cachetools import TTLCache

        self.settings = settings
        self.jwks = JwksCache(settings.jwks_url, settings.jwks_cache_seconds) if settings.jwks_url else None
        self._verified: TTLCache[str, tuple[Identity, float]] = TTLCache(maxsize=10_000, ttl=60)

    async def verify(self, token: str) -> Identity:
        """The identity a token proves.

        Raises:
            UnauthorizedError: saying why the token is refused.
        """
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("The bearer token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if alg not in settings.algorithms:
            raise UnauthorizedError(
                f"Tokens signed with {alg!r} are not accepted; accepted: {', '.join(settings.algorithms)}."
            )
        key: Any = settings.secret if alg == "HS256" else None
        if key is None:
            if self.jwks is None:
                raise UnauthorizedError(f"No key is configured for {alg} tokens.")
            key = await self.jwks.key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp"], "verify_aud": settings.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("The token has expired; get a new one from the authorization server.") from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError(
                f"The token is not meant for this server (audience must be {settings.audience!r})."
            ) from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError(f"The token's issuer is not accepted (expected {settings.issuer!r}).") from None
        except jwt.InvalidSignatureError:
            raise UnauthorizedError("The token's signature does not verify.") from None
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"The token is not valid: {exc}.") from None
        identity = Identity(
            name=str(claims.get(settings.subject_claim) or "anonymous"),
            method="jwt",
            roles=frozenset(_words(claims.get(settings.roles_claim))),
            scopes=frozenset(_words(claims.get(settings.scopes_claim))),
            toolsets=tuple(_words(claims.get(settings.toolsets_claim))) if settings.toolsets_claim else (),
        )
        self._verified[token] = (identity, min(float(claims["exp"]), time.time() + 60))
        return identity


class Authenticator:
    """Turns request credentials (`Authorization: Bearer ...` or `X-API-Key`) into an `Identity`."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._keys = {
            k.sha256: Identity(name=k.name, method="api_key", roles=frozenset(k.roles), toolsets=tuple(k.toolsets))
            for k in settings.api_keys
        }
        self.jwt = JwtVerifier(settings.jwt) if settings.jwt is not None else None

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Identity:
        """The identity the credentials prove.

        Raises:
            UnauthorizedError: no credentials, or credentials that do not verify.
        """
        if api_key is None and authorization and authorization[:7].lower() == "apikey ":
            api_key = authorization[7:].strip()
        if api_key is not None:
            found = self._keys.get(hashlib.sha256(api_key.encode()).hexdigest())
            if found is None:
                raise UnauthorizedError("The API key is not valid.")
            return found
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            if self._keys.get(hashlib.sha256(token.encode()).hexdigest()) is not None:
                return self._keys[hashlib.sha256(token.encode()).hexdigest()]
            if self.jwt is None:
                raise UnauthorizedError("Bearer tokens are not accepted here; send an API key in X-API-Key.")
            return await self.jwt.verify(token)
        raise UnauthorizedError("Authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key: <key>'.")


class Authorizer:
    """Rules per tool-id glob: the first matching rule decides; a tool no rule matches is open to every caller."""

    def __init__(self, rules: list[RuleSettings]) -> None:
        self.rules = rules
        self._decided: dict[tuple[str, Identity], bool] = {}

    def allows(self, identity: Identity, tool_id: str) -> bool:
        """May `identity` see and run `tool_id`?"""
        key = (tool_id, identity)
        decided = self._decided.get(key)
        if decided is None:
            rule = next((r for r in self.rules if _fnmatch(tool_id, r.tools)), None)
            decided = rule is None or identity.allows(rule.roles, rule.scopes)
            if len(self._decided) > 100_000:
                self._decided.clear()
            self._decided[key] = decided
        return decided

    def hidden_namespaces(self, identity: Identity, namespaces: list[str]) -> list[str]:
        """Namespaces every tool of which is forbidden to `identity` (their rules cover `ns:*`)."""
        return [ns for ns in namespaces if not self.allows(identity, f"{ns}:*")]

    def rule_for(self, tool_id: str) -> RuleSettings | None:
        """The rule deciding `tool_id`, if any."""
        return next((r for r in self.rules if _fnmatch(tool_id, r.tools)), None)


class Auth:
    """The auth middleware's state; `wrap` is the middleware (checks the rules and writes the audit log)."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        resolve: Callable[[str], tuple[Tool, str] | None],
        audit: AuditLog | None = None,
        unknown: Callable[[str, Identity], UnknownToolError] | None = None,
        local: Identity | None = None,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.settings = settings
        self.on_refused = on_refused
        self.authenticator = Authenticator(settings)
        self.authorizer = Authorizer(settings.rules)
        self.local = local or Identity(name="local", method="local", roles=frozenset(settings.local_roles))
        self.audit = audit
        self.resolve = resolve
        self.unknown = unknown

    def identity(self, ctx: Any) -> Identity:
        """The identity a call runs as."""
        return identity_of(ctx, self.local)

    def access(self, who: Identity) -> Access:
        """What `who` may see and reach by these rules (the seam every path asks; see `aperture.ops.access`)."""
        return Access(identity=who, allows=self.authorizer.allows)

    def wrap(self, inner: RunFn) -> RunFn:
        """The middleware."""

        async def run(call: ToolCall) -> RunResult:
            who = identity_of(call.ctx, self.local)
            tool_id = call.tool_id
            found = self.resolve(tool_id) if isinstance(tool_id, str) else None
            key = found[0].key if found is not None else str(tool_id)
            started = time.perf_counter()
            if self.audit is not None:
                try:
                    self.audit.admit("run_tool")
                except AuditUnavailableError as refused:
                    refused.tool_id = str(tool_id)
                    if self.on_refused is not None:
                        self.on_refused(str(tool_id), "audit_unavailable")
                    return RunResult.failure(str(tool_id), refused)
            if found is not None and not self.access(who).may_see_tool(key):
                rule = self.authorizer.rule_for(key)
                needs = (
                    " or ".join([*(f"role '{r}'" for r in rule.roles), *(f"scope '{s}'" for s in rule.scopes)])
                    if rule
                    else ""
                )
                error = ForbiddenError(
                    f"Caller '{who.name}' may not use tool '{key}': it requires {needs or 'an operator grant'}. "
                    "Use another tool, or ask an operator for access.",
                    tool_id=tool_id,
                    op="run_tool",
                    details={"identity": who.name},
                )
                result = RunResult.failure(str(tool_id), error)
                if self.on_refused is not None:
                    self.on_refused(str(tool_id), "forbidden")
            elif found is None and self.unknown is not None and isinstance(tool_id, str):
                result = await self._run_unknown(inner, call, who, self.unknown)
            else:
                result = await inner(call)
            if self.audit is not None:
                outcome = "ok" if not result.is_error else (str(result.error.code) if result.error else "tool_error")
                elapsed = round((time.perf_counter() - started) * 1000, 3)
                toolset = toolset_of(call.ctx)
                self.audit.record("run", who, key, outcome, tool_id=key[:200], duration_ms=elapsed, toolset=toolset)
            return result

        return run

    async def _run_unknown(
        self, inner: RunFn, call: ToolCall, who: Identity, unknown: Callable[[str, Identity], UnknownToolError]
    ) -> RunResult:
        """A call of an id the catalog does not resolve, answered without naming tools `who` may not see.

        An id the rules hide is unknown outright, so the inner layers cannot say it is held or its backend
        is down; for another, the runner's "did you mean" is redone over the tools `who` may see.
        """
        tool_id = str(call.tool_id)
        try:
            hidden = not self.access(who).may_see_tool(ToolId.parse(tool_id).key)
        except InvalidToolIdError:
            if not ToolId.is_bare_name(tool_id):
                return await inner(call)  # the runner explains the malformed id (it names no other tool)
            hidden = False  # a bare name: the ids of that name are suggested, those `who` may see
        result = None if hidden else await inner(call)
        if result is not None and not isinstance(result.error, UnknownToolError):
            return result
        error = unknown(tool_id, who)
        error.op = "run_tool"
        return RunResult.failure(tool_id, error, result.duration_ms if result is not None else 0.0)


def _fnmatch(tool_id: str, glob: str) -> bool:
    return first_match([glob], tool_id) is not None


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []
