"""Operations: middleware around every call (auth, resilience, cache, observe), the audit log and health.

Names load lazily, so the configuration can read `ops.settings` without the optional dependencies of the
`ops` extra (OpenTelemetry, Redis, PyJWT, cachetools, diskcache) being imported until a piece is enabled.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aperture.ops.access import (
        OPEN,
        TOOLSET_KEY,
        Access,
        current_toolset,
        toolset_of,
    )
    from aperture.ops.audit import (
        AuditLog,
        AuditSink,
        FileAudit,
        RedisAudit,
        Spool,
    )
    from aperture.ops.auth import (
        Auth,
        Authenticator,
        Authorizer,
        JwksCache,
        JwtVerifier,
    )
    from aperture.ops.cache import (
        CachedResult,
        CacheStore,
        FileStore,
        MemoryStore,
        RedisStore,
        ResultCache,
        clear_store,
        definition_hash,
    )
    from aperture.ops.chain import (
        Ops,
        Resolver,
    )
    from aperture.ops.health import (
        HealthChecker,
    )
    from aperture.ops.identity import (
        IDENTITY_KEY,
        LOCAL,
        Identity,
        current_identity,
        identity_of,
    )
    from aperture.ops.observe import (
        Observer,
        Redactor,
        Telemetry,
    )
    from aperture.ops.resilience import (
        Resilience,
        first_match,
    )
    from aperture.ops.settings import (
        ApiKeySettings,
        AuditSpoolSettings,
        AuthSettings,
        BindingSettings,
        BreakerSettings,
        BulkheadSettings,
        CacheSettings,
        HealthSettings,
        JwtSettings,
        ObserveSettings,
        OpsSettings,
        RateLimitSettings,
        RedisSettings,
        ResilienceSettings,
        RetrySettings,
        RuleSettings,
        parse_rate,
    )
    from aperture.ops.shared import (
        BreakerStore,
        BucketStore,
        LocalBreakers,
        LocalBuckets,
        RedisBreakers,
        RedisBuckets,
        RedisLink,
    )

_HOMES = {
    "IDENTITY_KEY": "identity",
    "LOCAL": "identity",
    "OPEN": "access",
    "TOOLSET_KEY": "access",
    "Access": "access",
    "ApiKeySettings": "settings",
    "AuditLog": "audit",
    "AuditSink": "audit",
    "AuditSpoolSettings": "settings",
    "Auth": "auth",
    "AuthSettings": "settings",
    "Authenticator": "auth",
    "Authorizer": "auth",
    "BindingSettings": "settings",
    "BreakerSettings": "settings",
    "BreakerStore": "shared",
    "BucketStore": "shared",
    "BulkheadSettings": "settings",
    "CacheSettings": "settings",
    "CacheStore": "cache",
    "CachedResult": "cache",
    "FileAudit": "audit",
    "FileStore": "cache",
    "HealthChecker": "health",
    "HealthSettings": "settings",
    "Identity": "identity",
    "JwksCache": "auth",
    "JwtSettings": "settings",
    "JwtVerifier": "auth",
    "LocalBreakers": "shared",
    "LocalBuckets": "shared",
    "MemoryStore": "cache",
    "ObserveSettings": "settings",
    "Observer": "observe",
    "Ops": "chain",
    "OpsSettings": "settings",
    "RateLimitSettings": "settings",
    "Redactor": "observe",
    "RedisAudit": "audit",
    "RedisBreakers": "shared",
    "RedisBuckets": "shared",
    "RedisLink": "shared",
    "RedisSettings": "settings",
    "RedisStore": "cache",
    "Resilience": "resilience",
    "ResilienceSettings": "settings",
    "Resolver": "chain",
    "ResultCache": "cache",
    "RetrySettings": "settings",
    "RuleSettings": "settings",
    "Spool": "audit",
    "Telemetry": "observe",
    "clear_store": "cache",
    "current_identity": "identity",
    "current_toolset": "access",
    "definition_hash": "cache",
    "first_match": "resilience",
    "identity_of": "identity",
    "parse_rate": "settings",
    "toolset_of": "access",
}

__all__ = [
    "IDENTITY_KEY",
    "LOCAL",
    "OPEN",
    "TOOLSET_KEY",
    "Access",
    "ApiKeySettings",
    "AuditLog",
    "AuditSink",
    "AuditSpoolSettings",
    "Auth",
    "AuthSettings",
    "Authenticator",
    "Authorizer",
    "BindingSettings",
    "BreakerSettings",
    "BreakerStore",
    "BucketStore",
    "BulkheadSettings",
    "CacheSettings",
    "CacheStore",
    "CachedResult",
    "FileAudit",
    "FileStore",
    "HealthChecker",
    "HealthSettings",
    "Identity",
    "JwksCache",
    "JwtSettings",
    "JwtVerifier",
    "LocalBreakers",
    "LocalBuckets",
    "MemoryStore",
    "ObserveSettings",
    "Observer",
    "Ops",
    "OpsSettings",
    "RateLimitSettings",
    "Redactor",
    "RedisAudit",
    "RedisBreakers",
    "RedisBuckets",
    "RedisLink",
    "RedisSettings",
    "RedisStore",
    "Resilience",
    "ResilienceSettings",
    "Resolver",
    "ResultCache",
    "RetrySettings",
    "RuleSettings",
    "Spool",
    "Telemetry",
    "clear_store",
    "current_identity",
    "current_toolset",
    "definition_hash",
    "first_match",
    "identity_of",
    "parse_rate",
    "toolset_of",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aperture.ops' has no attribute {name!r}")
    return getattr(importlib.import_module(f"aperture.ops.{home}"), name)
