"""Result cache: content-addressed keys (tool id, a hash of the tool's definition, canonical JSON of the
arguments), stores in memory (cachetools), on disk (diskcache) or in Redis; only read-only or idempotent
tools, never errors; invalidation by tool and by namespace."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import mcp_types
import pydantic

from aperture.execution import RunFn, RunResult, ToolCall
from aperture.model import BackendUnavailableError, InvalidRequestError, Tool, ToolId
from aperture.ops.resilience import Resolve, first_match
from aperture.ops.settings import CacheSettings, OpsSettings
from aperture.ops.shared import RedisLink

logger = logging.getLogger(__name__)
_BLOCKS: pydantic.TypeAdapter[list[mcp_types.ContentBlock]] = pydantic.TypeAdapter(list[mcp_types.ContentBlock])


@dataclass(frozen=True, slots=True)
class CachedResult:
    """A stored result and how long it lives."""

    content: tuple[mcp_types.ContentBlock, ...]
    structured: Any
    ttl: float

    def to_json(self) -> bytes:
        """The result as JSON, for stores outside the process."""
        blocks = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in self.content]
        return json.dumps({"c": blocks, "s": self.structured, "t": self.ttl}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> CachedResult:
        """The inverse of `to_json`."""
        data = json.loads(raw)
        return cls(tuple(_BLOCKS.validate_python(data["c"])), data["s"], float(data["t"]))


class CacheStore(Protocol):
    """Where cached results live. Keys are `namespace:name:digest`, so invalidation can go by prefix."""

    async def get(self, key: str) -> CachedResult | None: ...

    async def set(self, key: str, value: CachedResult) -> None: ...

    async def delete_prefix(self, prefix: str) -> int: ...


class MemoryStore:
    """In-process LRU with a TTL per entry (`cachetools.TLRUCache`)."""

    def __init__(self, max_entries: int) -> None:
        from cachetools import TLRUCache

        self._cache: TLRUCache[str, CachedResult] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, now: now + value.ttl, timer=time.monotonic
        )

    async def get(self, key: str) -> CachedResult | None:
        return self._cache.get(key)

    async def set(self, key: str, value: CachedResult) -> None:
        self._cache[key] = value

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [k for k in list(self._cache.keys()) if k.startswith(prefix)]
        for key in doomed:
            self._cache.pop(key, None)
        return len(doomed)


class FileStore:
    """On disk (`diskcache`), size-limited, survives restarts; its I/O runs in a worker thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        import diskcache

        self._cache = diskcache.Cache(str(directory), size_limit=max_bytes)

    async def get(self, key: str) -> CachedResult | None:
        raw = await anyio.to_thread.run_sync(self._cache.get, key)
        return CachedResult.from_json(raw) if isinstance(raw, bytes | str) else None

    async def set(self, key: str, value: CachedResult) -> None:
        await anyio.to_thread.run_sync(lambda: self._cache.set(key, value.to_json(), expire=value.ttl))

    async def delete_prefix(self, prefix: str) -> int:
        def delete() -> int:
            doomed = [k for k in self._cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
            return sum(bool(self._cache.delete(key)) for key in doomed)  # expired entries are not counted

        return await anyio.to_thread.run_sync(delete)

    def close(self) -> None:
        """Close the database file."""
        self._cache.close()


class RedisStore:
    """In Redis, shared by replicas; while Redis is down every lookup misses and nothing is stored."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._prefix = f"{link.prefix}cache:"

    async def get(self, key: str) -> CachedResult | None:
        raw = await self._link.run(lambda client: client.get(self._prefix + key))
        return CachedResult.from_json(raw) if raw is not None else None

    async def set(self, key: str, value: CachedResult) -> None:
        await self._link.run(lambda client: client.set(self._prefix + key, value.to_json(), px=int(value.ttl * 1000)))

    async def delete_prefix(self, prefix: str) -> int:
        async def delete(client: Any) -> int:
            count, batch = 0, []
            pattern = _glob_escape(self._prefix + prefix) + "*"
            async for key in client.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    count += await client.delete(*batch)
                    batch = []
            return count + (await client.delete(*batch) if batch else 0)

        return await self._link.run(delete) or 0


class ResultCache:
    """The cache middleware's state; `wrap` is the middleware.

    Args:
        settings: the `ops.cache` section.
        store: where results are kept.
        resolve: finds a call's tool.
        on_lookup: told `(tool_id, hit)` on every lookup (for metrics).
    """

    def __init__(
        self,
        settings: CacheSettings,
        store: CacheStore,
        resolve: Resolve,
        on_lookup: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.resolve = resolve
        self.on_lookup = on_lookup
        self._facts: dict[str, tuple[Tool, str | None, float]] = {}

    def wrap(self, inner: RunFn) -> RunFn:
        """The middleware."""

        async def run(call: ToolCall) -> RunResult:
            found = self.resolve(call.tool_id) if isinstance(call.tool_id, str) else None
            if found is None:
                return await inner(call)
            tool = found[0]
            fingerprint, ttl = self._tool_facts(tool)
            if fingerprint is None:
                return await inner(call)
            try:
                canonical = json.dumps(call.args or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            except (TypeError, ValueError):
                return await inner(call)  # not JSON: not cacheable (the runner will say what is wrong)
            digest = hashlib.sha256(f"{fingerprint}\n{canonical}".encode()).hexdigest()
            key = f"{tool.key}:{digest}"
            try:
                cached = await self.store.get(key)
            except (OSError, ValueError, pydantic.ValidationError) as exc:
                logger.warning("cache lookup of %s failed: %s", tool.key, exc)
                cached = None
            if self.on_lookup is not None:
                self.on_lookup(tool.key, cached is not None)
            if cached is not None:
                return RunResult(tool_id=call.tool_id, content=cached.content, structured=cached.structured)
            result = await inner(call)
            if not result.is_error:
                try:
                    await self.store.set(key, CachedResult(result.content, result.structured, ttl))
                except (OSError, TypeError, ValueError) as exc:
                    logger.warning("cache store of %s failed: %s", tool.key, exc)
            return result

        return run

    def _tool_facts(self, tool: Tool) -> tuple[str | None, float]:
        """The definition hash (None: not cacheable) and TTL of a tool, computed once per definition."""
        known = self._facts.get(tool.key)
        if known is not None and known[0] is tool:
            return known[1], known[2]
        settings = self.settings
        annotations = tool.annotations
        cacheable = (
            bool(annotations.read_only or annotations.idempotent) or first_match(settings.tools, tool.key) is not None
        ) and first_match(settings.exclude, tool.key) is None
        fingerprint = definition_hash(tool) if cacheable else None
        ttl = tool.cache_ttl if tool.cache_ttl else settings.ttl
        self._facts[tool.key] = (tool, fingerprint, ttl)
        return fingerprint, ttl

    async def invalidate(
        self, tool_id: str | None = None, *, namespace: str | None = None, everything: bool = False
    ) -> int:
        """Drop the cached results of one tool (`ns:name`), of a whole namespace, or all; return how many went."""
        return await self.store.delete_prefix(invalidation_prefix(tool_id, namespace, everything=everything))


def invalidation_prefix(tool_id: str | None = None, namespace: str | None = None, *, everything: bool = False) -> str:
    """The key prefix of the entries to drop: one tool's, one namespace's, or (`everything`) all of them."""
    if (tool_id is not None) + (namespace is not None) + everything != 1:
        raise ValueError("give a tool id or a namespace (or everything)")
    if tool_id is not None:
        return f"{ToolId.parse(tool_id).key}:"
    if namespace is not None:
        if not namespace or ":" in namespace:
            raise InvalidRequestError(f"{namespace!r} is not a namespace: give the part before ':' of a tool id.")
        return f"{namespace}:"
    return ""


async def clear_store(
    settings: OpsSettings,
    tool_id: str | None = None,
    *,
    namespace: str | None = None,
    everything: bool = False,
    resolve_path: Callable[[str], Path] = Path,
) -> int:
    """Drop cached results from the configured store from outside any gateway (`aperture cache clear`).

    The file and Redis stores are shared with running gateways, so they see the change at once.

    Raises:
        InvalidRequestError: the store is `memory` (no other process can reach it), or `redis` without
            `ops.redis`; or the id or namespace is malformed.
        BackendUnavailableError: Redis cannot be reached (nothing was removed).
    """
    prefix = invalidation_prefix(tool_id, namespace, everything=everything)
    cache = settings.cache
    if cache.store == "memory":
        raise InvalidRequestError(
            "ops.cache.store is 'memory': each gateway keeps that cache inside its own process, where no other "
            "process can reach it, and it empties when the gateway stops. Restart the gateway to clear it, or "
            "set ops.cache.store to 'file' or 'redis' so the cache can be cleared from here."
        )
    if cache.store == "file":
        directory = resolve_path(cache.directory)
        if not directory.is_dir():
            return 0  # nothing was ever cached there (and opening it would create it)
        store = FileStore(directory, cache.max_bytes)
        try:
            return await store.delete_prefix(prefix)
        finally:
            store.close()
    redis = settings.redis
    if redis is None:
        raise InvalidRequestError("ops.cache.store is 'redis' but ops.redis is not configured: add its url.")
    # Not the hot path: a slow or large Redis gets more time than a call's lookup would.
    link = RedisLink(redis.url, prefix=redis.prefix, timeout=max(redis.timeout, 5.0), retry_after=redis.retry_after)
    try:
        removed = await RedisStore(link).delete_prefix(prefix)
        if link.last_error is not None:
            raise BackendUnavailableError(
                f"Redis at {redis.url} could not be reached ({link.last_error}), so nothing was removed. "
                "Check ops.redis.url and that Redis is running, then try again."
            )
        return removed
    finally:
        await link.aclose()


def definition_hash(tool: Tool) -> str:
    """A short hash of what defines a tool's behaviour, so a changed tool never answers from old results."""
    payload = json.dumps(
        [tool.key, tool.version, tool.description, tool.input_schema, tool.output_schema], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
