"""The `ops:` section of the configuration: auth, resilience, cache, observe, health, shared state, chain order."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Algorithm = Literal["HS256", "RS256", "ES256"]
LayerName = Literal["auth", "resilience", "cache", "observe"]
LAYER_NAMES: tuple[LayerName, ...] = ("auth", "resilience", "cache", "observe")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(second|sec|s|minute|min|m|hour|h)\s*$")
_PERIODS = {"second": 1.0, "sec": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0, "hour": 3600.0, "h": 3600.0}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_rate(text: str) -> tuple[float, float]:
    """`"60/minute"` -> `(60.0, 60.0)`: how many calls per how many seconds.

    Raises:
        ValueError: with the accepted forms.
    """
    match = _RATE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"rate {text!r} is not of the form 'N/second', 'N/minute' or 'N/hour' with N > 0")
    return float(match.group(1)), _PERIODS[match.group(2)]


def _check_rate(value: str | None) -> str | None:
    if value is not None:
        parse_rate(value)
    return value


class RedisSettings(_Section):
    """Shared state for several replicas: cache, rate-limit buckets, breaker state, audit stream."""

    url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (redis:// or rediss://).")
    prefix: str = Field("aperture:", description="Prefix of every key, so several gateways can share one Redis.")
    timeout: float = Field(0.25, gt=0, description="Seconds per Redis command before falling back to in-process.")
    retry_after: float = Field(5.0, gt=0, description="Seconds before trying Redis again after it failed.")


class ApiKeySettings(_Section):
    """One API key, stored as the SHA-256 of the key (never the key itself)."""

    name: str = Field(description="Who holds the key; recorded in the audit log.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key: `printf %s KEY | sha256sum`.")
    roles: list[str] = Field(default_factory=list, description="Roles this key grants.")
    toolsets: list[str] = Field(
        default_factory=list,
        description="Toolsets this key is bound to: its holder sees only these (their union), at any path.",
    )


class JwtSettings(_Section):
    """Bearer JWTs: HS256 with a shared secret, or RS256 / ES256 with keys from a JWKS URL."""

    algorithms: list[Algorithm] = Field(
        default_factory=lambda: list[Algorithm](["RS256", "ES256"]),
        description="Accepted algorithms ('none' never is).",
    )
    secret: str | None = Field(None, description="HS256 shared secret (use ${ENV} interpolation).")
    jwks_url: str | None = Field(None, description="Where the RS256/ES256 public keys are (a JWKS document).")
    jwks_cache_seconds: float = Field(600.0, gt=0, description="How long fetched keys are trusted before a refresh.")
    issuer: str | None = Field(None, description="Required `iss`.")
    audience: str | None = Field(None, description="Required `aud`.")
    leeway: float = Field(30.0, ge=0, description="Seconds of clock skew allowed on exp / nbf.")
    roles_claim: str = Field("roles", description="Claim holding the roles (a list or a space-separated string).")
    scopes_claim: str = Field("scope", description="Claim holding the scopes (a list or a space-separated string).")
    subject_claim: str = Field("sub", description="Claim naming the caller.")
    toolsets_claim: str | None = Field(
        None,
        description="Claim listing the toolsets a token is bound to (a list or a space-separated string); its "
        "holder sees only these. Names no toolset has are ignored, so a token naming only such sees nothing.",
    )

    @model_validator(mode="after")
    def _some_key(self) -> JwtSettings:
        if "HS256" in self.algorithms and self.secret is None and self.jwks_url is None:
            raise ValueError("HS256 needs 'secret' (the shared secret)")
        if any(a != "HS256" for a in self.algorithms) and self.jwks_url is None and self.secret is None:
            raise ValueError("RS256 / ES256 need 'jwks_url' (where the public keys are)")
        return self


class RuleSettings(_Section):
    """Who may use the tools matching a glob: any of `roles`, or any of `scopes`."""

    tools: str = Field(
        description="Glob on tool ids, e.g. 'admin:*' or 'github:delete_*'. Upstream prompts, resources and resource "
        "templates are matched as 'backend:prompt', 'backend:uri' and 'backend:template' (docs/operations.md)."
    )
    roles: list[str] = Field(default_factory=list, description="Any of these roles allows the tools.")
    scopes: list[str] = Field(default_factory=list, description="Any of these scopes allows the tools.")


class BindingSettings(_Section):
    """Callers with any of `roles` or any of `scopes` are bound to `toolsets`: they see only those."""

    roles: list[str] = Field(
        default_factory=list,
        description="Any of these roles binds (taken literally: '*' is a role name here, not a wildcard).",
    )
    scopes: list[str] = Field(default_factory=list, description="Any of these scopes binds.")
    toolsets: list[str] = Field(min_length=1, description="The toolsets such callers see (their union).")

    @model_validator(mode="after")
    def _someone(self) -> BindingSettings:
        if not self.roles and not self.scopes:
            raise ValueError("a binding needs roles or scopes (whom it binds)")
        return self


class AuditSpoolSettings(_Section):
    """Where audit records wait, on local disk, while the audit sink (Redis, or the file) cannot take them."""

    directory: str = Field(
        ".aperture/audit-spool",
        description="Directory of the spool, relative to the config file; each running gateway takes one slot in it.",
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="Most bytes of records the spool holds before it counts as full."
    )
    on_full: Literal["keep", "refuse"] = Field(
        "keep",
        description="When the spool is full: keep serving (the records that do not fit are dropped, counted and "
        "logged as errors), or refuse calls with an audit_unavailable tool error until records can be kept again.",
    )
    replay_every: float = Field(
        1.0, gt=0, description="Seconds between attempts to replay the spool while the sink is down."
    )


class AuthSettings(_Section):
    """Who is calling, and what they may see and run."""

    enabled: bool = False
    api_keys: list[ApiKeySettings] = Field(default_factory=list, description="Accepted API keys (hashed).")
    jwt: JwtSettings | None = Field(None, description="Accepted bearer JWTs.")
    rules: list[RuleSettings] = Field(
        default_factory=list, description="Per tool-id glob; the first matching rule decides, no match allows."
    )
    bindings: list[BindingSettings] = Field(
        default_factory=list,
        description="Roles and scopes bound to toolsets; a caller bound several ways sees the union.",
    )
    local_roles: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Roles of callers that did not come over HTTP (stdio, in-process); '*' passes every rule.",
    )
    local_key_env: str = Field(
        "APERTURE_API_KEY",
        description="An environment variable that, when set, holds one of api_keys: stdio and in-process callers "
        "then run as that key's holder (a desktop client passes it in the server's env) instead of local_roles.",
    )
    resource: str | None = Field(None, description="This server's URL as OAuth protected resource (HTTP).")
    authorization_servers: list[str] = Field(default_factory=list, description="Issuers clients get tokens from.")
    audit: Literal["off", "file", "redis"] = Field("off", description="Where the audit log goes.")
    audit_file: str = Field(".aperture/audit.jsonl", description="JSONL audit log, relative to the config file.")
    audit_stream_maxlen: int | None = Field(
        100_000,
        ge=1000,
        description="audit: redis keeps about this many records in the stream (older ones are trimmed: read the "
        "stream to keep them); null: never trimmed.",
    )
    audit_spool: AuditSpoolSettings = Field(
        AuditSpoolSettings(), description="Local, bounded spool for audit records while the audit sink is down."
    )


class BreakerSettings(_Section):
    """A circuit breaker per backend."""

    enabled: bool = True
    failures: int = Field(5, ge=1, description="Consecutive failures that open the breaker.")
    cooldown: float = Field(30.0, gt=0, description="Seconds the breaker stays open before one probe call.")


class RetrySettings(_Section):
    """Retries of failed calls that may succeed again, for idempotent or read-only tools only."""

    attempts: int = Field(3, ge=1, le=10, description="Tries in all (1: no retries).")
    backoff: float = Field(0.1, ge=0, description="Seconds before the first retry; doubles each time, with jitter.")
    max_backoff: float = Field(2.0, ge=0, description="Longest wait between tries.")


class BulkheadSettings(_Section):
    """At most `max_concurrent` calls per backend at once, `max_queue` more waiting; the rest are refused."""

    max_concurrent: int = Field(32, ge=1)
    max_queue: int = Field(64, ge=0)


class RateLimitSettings(_Section):
    """Token buckets: 'N/second', 'N/minute' or 'N/hour'."""

    global_: str | None = Field(None, alias="global", description="All calls together.")
    per_identity: str | None = Field(None, description="Each caller on its own.")
    tools: dict[str, str] = Field(default_factory=dict, description="Tool-id glob -> rate, shared by all callers.")

    _rates = field_validator("global_", "per_identity")(classmethod(lambda cls, v: _check_rate(v)))

    @field_validator("tools")
    @classmethod
    def _tool_rates(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_rate(rate)
        return value


class ResilienceSettings(_Section):
    """Timeouts, retries, breakers, rate limits and bulkheads."""

    enabled: bool = False
    timeouts: dict[str, float] = Field(
        default_factory=dict, description="Tool-id glob -> seconds; the first match wins (backends: their timeout)."
    )
    idempotent: list[str] = Field(default_factory=list, description="Tool-id globs to treat as idempotent.")
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    bulkhead: BulkheadSettings | None = Field(None, description="Per-backend concurrency limit (off when absent).")
    shared: bool = Field(False, description="Keep limits and breaker state in Redis (needs ops.redis).")


class CacheSettings(_Section):
    """Results of read-only or idempotent tools, keyed by tool, definition and arguments."""

    enabled: bool = False
    store: Literal["memory", "file", "redis"] = Field("memory", description="Where results are kept.")
    ttl: float = Field(300.0, gt=0, description="Seconds a result is kept, unless the tool says otherwise.")
    max_entries: int = Field(10_000, ge=1, description="Memory store: entries kept (least recently used go).")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1, description="File store: size limit.")
    directory: str = Field(".aperture/cache", description="File store: directory, relative to the config file.")
    tools: list[str] = Field(default_factory=list, description="Tool-id globs cached even without annotations.")
    exclude: list[str] = Field(default_factory=list, description="Tool-id globs never cached.")


class ObserveSettings(_Section):
    """OpenTelemetry spans and metrics, Prometheus /metrics, JSON logs."""

    enabled: bool = False
    service_name: str = "aperture"
    tracing: bool = True
    metrics: bool = True
    logs: bool = Field(False, description="One JSON log line per call (logger 'aperture.ops.calls').")
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318.")
    otlp_timeout: float = Field(
        3.0, gt=0, description="Seconds one OTLP export may take, retries included (bounds shutdown when it is down)."
    )
    redact: list[str] = Field(default_factory=list, description="More argument keys to redact in logs.")


class HealthSettings(_Section):
    """What /readyz requires."""

    required: list[str] | None = Field(
        None, description="Backends that must be healthy for readiness (default: every backend)."
    )
    timeout: float = Field(2.0, gt=0, description="Seconds each backend's health check may take.")
    detail: Literal["public", "full"] | None = Field(
        None,
        description="What /readyz and /metrics show a caller without a full_roles credential: public (/readyz: "
        "the status only; /metrics: totals without tool, namespace or backend labels) or full. Default: public "
        "when ops.auth is enabled, else full.",
    )
    full_roles: list[str] = Field(
        default_factory=lambda: ["admin"],
        description="Roles whose API key or bearer token (sent to /readyz or /metrics) gets the full view.",
    )


class OpsSettings(_Section):
    """The operations middleware around every call, outermost first."""

    chain: list[LayerName] = Field(
        default_factory=lambda: list(LAYER_NAMES), description="Order of the middleware, outermost first."
    )
    auth: AuthSettings = AuthSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    cache: CacheSettings = CacheSettings()
    observe: ObserveSettings = ObserveSettings()
    health: HealthSettings = HealthSettings()
    redis: RedisSettings | None = Field(None, description="Shared state for replicas (off when absent).")

    @model_validator(mode="after")
    def _consistent(self) -> OpsSettings:
        if len(set(self.chain)) != len(self.chain):
            raise ValueError(f"chain lists a middleware twice: {self.chain}")
        if self.redis is None and (self.cache.enabled and self.cache.store == "redis"):
            raise ValueError("cache.store is 'redis' but ops.redis is not configured; add ops.redis.url")
        if self.redis is None and self.resilience.enabled and self.resilience.shared:
            raise ValueError("resilience.shared needs ops.redis (where the shared state lives)")
        if self.redis is None and self.auth.enabled and self.auth.audit == "redis":
            raise ValueError("auth.audit is 'redis' but ops.redis is not configured")
        return self
