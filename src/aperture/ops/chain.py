"""The operations stack: builds the enabled middleware from `ops:` settings, in the configured order
(default auth -> resilience -> cache -> observe -> runner). A disabled piece is not in the stack at all."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from aperture.compose import Toolsets, ToolsetView
from aperture.execution import BackendRegistry, CountsUnrouted, Middleware, RunFn, Runner, closest_ids
from aperture.model import ApertureError, InvalidToolIdError, Tool, ToolId, UnknownToolError
from aperture.ops.access import OPEN, Access, toolset_of
from aperture.ops.cache import CacheStore, FileStore, MemoryStore, RedisStore, ResultCache
from aperture.ops.health import HealthChecker
from aperture.ops.identity import LOCAL, Identity, current_identity, identity_of, local_identity
from aperture.ops.settings import OpsSettings
from aperture.ops.shared import RedisLink

if TYPE_CHECKING:
    from aperture.ops.audit import AuditLog

logger = logging.getLogger(__name__)
_MAX_VIEWS = 64  # visible catalogs kept per snapshot, one per distinct set of rights


class Resolver:
    """Tool id -> (tool, backend name), memoised per catalog snapshot (every layer asks, so it must be cheap)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._snapshot: Any = None
        self._known: dict[str, tuple[Tool, str] | None] = {}

    def __call__(self, tool_id: str) -> tuple[Tool, str] | None:
        snapshot = self._runner.registry.snapshot
        if snapshot is not self._snapshot or len(self._known) > 50_000:
            self._snapshot, self._known = snapshot, {}
        try:
            return self._known[tool_id]
        except KeyError:
            pass
        try:
            tool, backend = self._runner.resolve(tool_id)
            found: tuple[Tool, str] | None = (tool, backend.name)
        except ApertureError:
            found = None
        self._known[tool_id] = found
        return found


class Ops:
    """The operations layer of one gateway: the middleware stack, the health checker, the HTTP extras.

    Args:
        settings: the `ops:` section.
        registry: the backends (for health).
        runner: the innermost run function (and where tools are resolved).
        resolve_path: turns a configured relative path into an absolute one.
        toolsets: the configured toolsets, the views callers may be confined to (see `access`).
    """

    def __init__(
        self,
        settings: OpsSettings,
        registry: BackendRegistry,
        runner: Runner,
        *,
        resolve_path: Callable[[str], Path] = Path,
        toolsets: Toolsets | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.resolve = Resolver(runner)
        self.toolsets = toolsets or Toolsets(())
        self._bound: dict[Identity, tuple[str, ...]] = {}
        self._accesses: dict[tuple[Identity, str | None], Access] = {}
        self._accesses_version = -1
        self._views: dict[tuple[int, Hashable], tuple[Mapping[str, Tool], Mapping[str, int]]] = {}
        self.link: RedisLink | None = None
        self.telemetry: Any = None
        self.observer: Any = None
        self.cache: ResultCache | None = None
        self.resilience: Any = None
        self.auth: Any = None
        self._closers: list[Callable[[], None]] = []
        layers: dict[str, Middleware] = {}
        needs_redis = settings.redis is not None and (
            (settings.cache.enabled and settings.cache.store == "redis")
            or (settings.resilience.enabled and settings.resilience.shared)
            or (settings.auth.enabled and settings.auth.audit == "redis")
        )
        if needs_redis and settings.redis is not None:
            redis = settings.redis
            self.link = RedisLink(redis.url, prefix=redis.prefix, timeout=redis.timeout, retry_after=redis.retry_after)
        if settings.observe.enabled:
            from aperture.ops.observe import Observer, Telemetry

            self.telemetry = Telemetry(settings.observe)
            self.telemetry.watch_unrouted(self._unrouted)
            self.observer = Observer(settings.observe, self.telemetry, self.resolve)
            layers["observe"] = self.observer.wrap
        if settings.cache.enabled:
            self.cache = ResultCache(
                settings.cache,
                self._cache_store(resolve_path),
                self.resolve,
                on_lookup=self.telemetry.cache_lookup if self.telemetry is not None else None,
            )
            layers["cache"] = self.cache.wrap
        self.local = local_identity(settings.auth) if settings.auth.enabled else LOCAL
        if settings.resilience.enabled:
            self.resilience = self._resilience()
            layers["resilience"] = self.resilience.wrap
        self.audit: AuditLog | None = self._audit(resolve_path) if settings.auth.enabled else None
        if settings.auth.enabled:
            from aperture.ops.auth import Auth

            self.auth = Auth(
                settings.auth,
                resolve=self.resolve,
                audit=self.audit,
                unknown=self._unknown_to,
                local=self.local,
                on_refused=self.observer.refused if self.observer is not None else None,
            )
            layers["auth"] = self.auth.wrap
        self.middleware: list[Middleware] = [layers[name] for name in settings.chain if name in layers]
        self.layers = [name for name in settings.chain if name in layers]
        self.health = HealthChecker(
            registry,
            settings.health,
            breakers=self.resilience.breaker_states if self.resilience is not None else None,
            redis=self.link.health if self.link is not None else None,
            audit=self.audit.stats if self.audit is not None else None,
        )

    def _unrouted(self) -> list[tuple[str, str, int]]:
        """`(backend, kind, count)` of upstream messages that matched no call, for the metrics."""
        counts: list[tuple[str, str, int]] = []
        for name in self.registry.names():
            backend = self.registry.get(name)
            if isinstance(backend, CountsUnrouted):
                counts += [(name, kind, count) for kind, count in backend.unrouted.items()]
        return counts

    def _audit(self, resolve_path: Callable[[str], Path]) -> AuditLog | None:
        auth = self.settings.auth
        if auth.audit == "off" or (auth.audit == "redis" and self.link is None):
            return None
        from aperture.ops.audit import AuditLog, AuditSink, FileAudit, RedisAudit, Spool

        sink: AuditSink
        if auth.audit == "file":
            sink = FileAudit(resolve_path(auth.audit_file))
        else:
            assert self.link is not None
            sink = RedisAudit(self.link, auth.audit_stream_maxlen)
        spool = Spool(resolve_path(auth.audit_spool.directory), auth.audit_spool.max_bytes)
        counted = self.telemetry.audit_counted if self.telemetry is not None else None
        return AuditLog(sink, spool, auth.audit_spool, on_count=counted)

    async def run(self) -> None:
        """The operations layer's background work (the audit writer), until cancelled."""
        if self.audit is not None:
            await self.audit.run()

    def audited(
        self, event: str, target: str | None = None, *, who: Identity | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Record `event` on `target` in the audit log when the block ends, with the outcome it ended with.

        The caller is `who`, else the request being served. A no-op without an audit log.

        Raises:
            AuditUnavailableError: on entering, when the audit log cannot keep records and must refuse.
        """
        if self.audit is None:
            return contextlib.nullcontext()
        return _audited(self.audit, event, target, who or self._current())

    def wrap(self, run: RunFn) -> RunFn:
        """`run` wrapped in the enabled middleware, outermost first (`run` itself when none is enabled).

        With toolsets configured, the toolset view comes first of all: a call names a tool as its caller's
        view does, and one outside the view is unknown before any other layer sees it.
        """
        wrapped = reduce(lambda inner, wrap: wrap(inner), reversed(self.middleware), run)
        if self.toolsets:
            from aperture.ops.viewed import in_view

            wrapped = in_view(wrapped, self.access, self.unknown_tool)
        return wrapped

    # --- who sees what: the one seam -------------------------------------------------------------

    def access(self, ctx: Any = None) -> Access:
        """What the caller of `ctx` (else of the request being served) may see and reach: the auth rules and
        the toolset view it is confined to.

        The one place both are asked from: every listing, lookup and notice of every surface goes through the
        `Access` this returns (`OPEN` without auth and toolsets). The view is the caller's bound toolsets (their
        union) when it is bound, narrowed to the toolset the request names when that is one of them; else the
        toolset the request names; else none (the whole catalog).
        """
        if self.auth is None and not self.toolsets:
            return OPEN
        who = identity_of(ctx, self.local) if ctx is not None else self._current()
        return self._access_for(who, toolset_of(ctx))

    def _access_for(self, who: Identity, requested: str | None) -> Access:
        if self.auth is None and not self.toolsets:
            return OPEN
        # Every listing and call asks: kept per caller and toolset, for the current catalog version.
        version = self.registry.snapshot.version
        if version != self._accesses_version:
            self._accesses, self._accesses_version = {}, version
        key = (who, requested)
        found = self._accesses.get(key)
        if found is None:
            view = self._toolset_view(who, requested) if self.toolsets else None
            allows = self.auth.authorizer.allows if self.auth is not None else None
            found = OPEN if allows is None and view is None else Access(identity=who, allows=allows, view=view)
            if len(self._accesses) >= 4096:
                self._accesses.clear()
            self._accesses[key] = found
        return found

    def bound_toolsets(self, who: Identity) -> tuple[str, ...]:
        """The toolsets `who` is bound to, by its credential and by role and scope bindings (empty: unbound).

        Configured ones come in configuration order; names no toolset has (a token's claim may name any) are
        kept, last, so that a caller bound only to such sees nothing rather than everything.
        """
        found = self._bound.get(who)
        if found is None:
            names = set(who.toolsets)
            for binding in self.settings.auth.bindings if self.auth is not None else ():
                if who.roles.intersection(binding.roles) or who.scopes.intersection(binding.scopes):
                    names.update(binding.toolsets)
            found = (*(n for n in self.toolsets.names if n in names), *sorted(names - set(self.toolsets.names)))
            if len(self._bound) > 10_000:
                self._bound.clear()
            self._bound[who] = found
        return found

    def usable_toolsets(self, who: Identity | None = None) -> list[str]:
        """The configured toolsets the caller (`who`, else the current one) may use: its bound ones when it is
        bound, else all of them."""
        bound = self.bound_toolsets(self._current() if who is None else who)
        return [name for name in bound if name in self.toolsets] if bound else self.toolsets.names

    def _toolset_view(self, who: Identity, requested: str | None) -> ToolsetView | None:
        bound = self.bound_toolsets(who)
        if bound:
            names: tuple[str, ...] = (requested,) if requested in bound else bound
        elif requested is not None:
            names = (requested,)
        else:
            return None
        snapshot = self.registry.snapshot
        return self.toolsets.view(names, snapshot.tools, snapshot.version)

    def visible_in(self, toolset: str) -> Mapping[str, Tool]:
        """The tools of `toolset` the current caller may see (by the ids the toolset gives them, as it shows
        them), as it would at `/mcp/{toolset}`; ask it only of a toolset in `usable_toolsets()`."""
        access = self._access_for(self._current(), toolset)
        return self.registry.snapshot.tools if access.unrestricted else self._view(access)[0]

    def may_see(self, tool_id: str, ctx: Any = None) -> bool:
        """Whether the current caller may see (and so run) the catalog's `tool_id`; True when nothing applies."""
        return (self.auth is None and not self.toolsets) or self.access(ctx).may_see_tool(tool_id)

    def visibility(self, access: Access | None = None) -> tuple[Hashable, Callable[[str], bool]] | None:
        """What the current caller (or the one of `access`) may see, for the index to filter before paging
        (None: everything); the first part names the caller's rights (`Access.rights`), the second tests a
        catalog key."""
        access = self.access() if access is None else access
        if access.unrestricted:
            return None
        return access.rights, access.may_see_tool

    def visible_tools(self, who: Identity | None = None) -> Mapping[str, Tool]:
        """The catalog as the caller (`who`, else the current one; through the current request's toolset) sees
        it: only the tools it may run, by the ids it knows them by, as its view shows them."""
        access = self.access() if who is None else self._access_for(who, toolset_of())
        if access.unrestricted:
            return self.registry.snapshot.tools
        return self._view(access)[0]

    def visible_namespaces(self, who: Identity | None = None, *, access: Access | None = None) -> Mapping[str, int]:
        """Namespace -> how many of its tools the caller (`who`, or the one of `access`, else the current one)
        may see; namespaces with none are left out."""
        if access is None:
            access = self.access() if who is None else self._access_for(who, toolset_of())
        if access.unrestricted:
            return Counter(tool.namespace for tool in self.registry.snapshot.tools.values())
        return self._view(access)[1]

    def _view(self, access: Access) -> tuple[Mapping[str, Tool], Mapping[str, int]]:
        """Kept per catalog version and set of rights, like the index's masks (error paths ask too)."""
        snapshot = self.registry.snapshot
        key = (snapshot.version, access.rights)
        view = self._views.get(key)
        if view is None:
            may_see, present = access.may_see_tool, access.present
            tools = {access.public_id(k): present(tool) for k, tool in snapshot.tools.items() if may_see(k)}
            view = tools, Counter(tool.namespace for tool in tools.values())
            if len(self._views) >= _MAX_VIEWS or any(version != snapshot.version for version, _ in self._views):
                self._views = {}
            self._views[key] = view
        return view

    def unknown_tool(self, tool_id: str, ctx: Any = None) -> UnknownToolError:
        """`UnknownToolError` for `tool_id` whose "did you mean" names only tools the caller may see (by the ids
        it knows them by)."""
        return self._unknown_in(tool_id, self.access(ctx))

    def _unknown_to(self, tool_id: str, who: Identity) -> UnknownToolError:
        return self._unknown_in(tool_id, self._access_for(who, toolset_of()))

    def _unknown_in(self, tool_id: str, access: Access) -> UnknownToolError:
        try:
            key = ToolId.parse(tool_id).key
        except InvalidToolIdError:
            key = tool_id
        visible = self.registry.snapshot.tools if access.unrestricted else self._view(access)[0]
        closest = closest_ids(key, visible)
        renamed = access.public_id(key) if access.may_see_tool(key) else key
        if renamed != key:  # the old id of a tool the caller's view renamed: point at the new one
            closest = [renamed, *(c for c in closest if c != renamed)][:3]
        return UnknownToolError(tool_id, closest)

    def caller(self) -> Identity:
        """The identity of the request being served (the local caller outside any request)."""
        return self._current()

    def _current(self) -> Identity:
        return current_identity.get() or self.local

    def _cache_store(self, resolve_path: Callable[[str], Path]) -> CacheStore:
        cache = self.settings.cache
        if cache.store == "file":
            store = FileStore(resolve_path(cache.directory), cache.max_bytes)
            self._closers.append(store.close)
            return store
        if cache.store == "redis" and self.link is not None:
            return RedisStore(self.link)
        return MemoryStore(cache.max_entries)

    def _resilience(self) -> Any:
        from aperture.ops.resilience import Resilience
        from aperture.ops.shared import BreakerStore, BucketStore, RedisBreakers, RedisBuckets

        buckets: BucketStore | None = None
        breakers: BreakerStore | None = None
        if self.settings.resilience.shared and self.link is not None:
            buckets, breakers = RedisBuckets(self.link), RedisBreakers(self.link)
        return Resilience(
            self.settings.resilience,
            self.resolve,
            buckets=buckets,
            breakers=breakers,
            on_breaker=self.telemetry.breaker_changed if self.telemetry is not None else None,
            on_refused=self.observer.refused if self.observer is not None else None,
            local=self.local,
        )

    async def aclose(self) -> None:
        """Ship (or spool) the audit records left, flush telemetry, close files and the Redis pool."""
        if self.audit is not None:
            await self.audit.aclose()
        for close in self._closers:
            close()
        if self.telemetry is not None:
            # The last exports may wait for a slow collector: off the event loop, and bounded by otlp_timeout.
            await anyio.to_thread.run_sync(self.telemetry.shutdown)
        if self.link is not None:
            await self.link.aclose()


@contextlib.contextmanager
def _audited(audit: AuditLog, event: str, target: str | None, who: Identity) -> Iterator[None]:
    from aperture.ops.audit import outcome_of

    audit.admit(event)
    outcome = "cancelled"
    try:
        yield
        outcome = "ok"
    except Exception as error:
        outcome = outcome_of(error)
        raise
    finally:
        audit.record(event, who, target, outcome)
