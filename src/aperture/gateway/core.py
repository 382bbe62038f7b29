"""The gateway: backends from the configuration, the index kept in step with them, and the operations
behind every surface (search, list, describe, examples, run). Surfaces translate; this module decides."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio

from aperture.compose import (
    TOOLSET_ID_PREFIX,
    ChainResult,
    ChainStep,
    Recipe,
    SkillBackend,
    SkillHost,
    SkillReport,
    SkillsSettings,
    Toolsets,
    run_chain,
)
from aperture.config import BackendConfig, BuildContext, Config, kind_named
from aperture.discovery import (
    BM25Strategy,
    SearchPage,
    SearchStrategy,
    ToolIndex,
    resolve_strategy,
    strategy_named,
)
from aperture.execution import (
    Availability,
    Backend,
    BackendRegistry,
    CallContext,
    CatalogSnapshot,
    FingerprintStore,
    IntegrityGuard,
    LoadReport,
    NamespaceDescriptions,
    NewTools,
    Policy,
    Reloadable,
    Runner,
    RunResult,
    Startable,
    ToolCall,
    raise_unavailable_or_unknown,
)
from aperture.execution.code import CodeExecutor, Outcome
from aperture.gateway import cursors
from aperture.gateway.limits import check_limit, check_search_text
from aperture.model import (
    ApertureError,
    ConfigError,
    DetailLevel,
    InvalidRequestError,
    Redactor,
    Tool,
    ToolId,
    ToolSummary,
    UnknownToolError,
    describe,
    install_log_redaction,
)
from aperture.model.errors import shorten
from aperture.ops.access import Access
from aperture.ops.chain import Ops
from aperture.ops.identity import Identity, current_identity

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5
MAX_TOOLSET_TOOLS = 200  # tool summaries describe_toolset gives


def build_backend(
    spec: BackendConfig, config: Config, guard: IntegrityGuard | None = None, redactor: Redactor | None = None
) -> Backend:
    """Create the backend a configuration entry describes (not yet started), with the factory of its kind.

    Args:
        redactor: learns the credentials a backend finds as it loads (a capabilities backend's files).

    Raises:
        ConfigError: no kind of that name is registered (it lists the kinds there are).
    """
    context = BuildContext(config=config, guard=guard, redactor=redactor)
    return kind_named(spec.kind).build(spec, context)


class Gateway:
    """Everything behind the meta-tools, independent of how callers reach it.

    Use as an async context manager: entering starts the backends and indexes their tools; leaving
    closes them. Operations raise `ApertureError`s with messages meant for the caller.
    """

    def __init__(self, config: Config | None = None, *, registry: BackendRegistry | None = None) -> None:
        self.config = config or Config()
        integrity = self.config.integrity
        store = FingerprintStore(self.config.state_path(integrity.store))
        self.guard = IntegrityGuard(store, Policy(integrity.policy), integrity.kinds, NewTools(integrity.new_tools))
        self.registry = registry or BackendRegistry(guard=self.guard)
        self.index = _index(self.config)
        timeouts = {b.name: b.timeout for b in self.config.backends if b.timeout is not None}
        if self.config.skills is not None:  # a skill stops itself at its own timeout, naming the step it was on
            timeouts[self.config.skills.namespace] = self.config.skills.timeout + 5.0
        # Every configured credential, taken out of results, errors and log records (capability files add theirs).
        self.redactor = Redactor(self.config.secret_values)
        # What each backend says about itself, bounded and redacted; a `description:` in its entry instead.
        self.registry.namespaces = NamespaceDescriptions(
            {b.name: b.description for b in self.config.backends if b.description}, self.redactor
        )
        self.runner = Runner(
            self.registry,
            default_timeout=self.config.execution.timeout,
            backend_timeouts=timeouts,
            redactor=self.redactor,
        )
        # The operations middleware (auth, resilience, cache, observe) as configured; none of it when disabled.
        self.toolsets = Toolsets(self.config.toolsets)
        self._toolset_problems: list[str] = []
        try:
            self.ops = Ops(
                self.config.ops, self.registry, self.runner, resolve_path=self.config.resolve, toolsets=self.toolsets
            )
        except ModuleNotFoundError as exc:  # an enabled piece whose library is not installed
            raise ConfigError(
                f"the ops pieces enabled in the configuration need the 'ops' extra ({exc}); install it in the "
                "Aperture checkout with: .venv/bin/pip install -e '.[ops]'"
            ) from None
        self._run = self.ops.wrap(self.runner)
        self.has_examples: bool = False
        """Whether some tool of the catalog has worked examples (list_tool_examples is offered only then)."""
        self.registry.add_listener(self._on_catalog_changed)
        self._listeners: list[Callable[[], None]] = []
        self._stack: AsyncExitStack | None = None
        self.skills: SkillBackend | None = None
        """The skills backend, when the configuration has a `skills:` section (registered on entering)."""
        code = self.config.execution.code
        self.code: CodeExecutor | None = CodeExecutor(code) if code.enabled else None
        """Code mode (execute_code), when `execution.code.enabled`."""
        if self.code is not None:
            self.ops.health.code = self.code.health

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Gateway:
        # Built before any task group, so a configuration mistake surfaces as itself, not in an ExceptionGroup.
        backends = [build_backend(spec, self.config, self.guard, self.redactor) for spec in self.config.backends]
        async with AsyncExitStack() as stack:
            stack.callback(install_log_redaction(self.redactor))
            task_group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(task_group.cancel_scope.cancel)
            stack.push_async_callback(self.registry.aclose)
            # Upstream servers start concurrently: a slow one does not hold up the others.
            async with anyio.create_task_group() as starting:
                for backend in backends:
                    if isinstance(backend, Startable):
                        starting.start_soon(backend.start, task_group)
            for backend in backends:
                await self.registry.register(backend)
            if self.config.skills is not None:  # last: its recipes are checked against the others' tools
                self.skills = self._skill_backend(self.config.skills)
                await self.skills.start(task_group)
                await self.registry.register(self.skills)
                self.registry.add_listener(self.skills.catalog_changed)
            if self.index.version != self.registry.snapshot.version:
                self.index.update(self.registry.snapshot, version=self.registry.snapshot.version)
            task_group.start_soon(self.registry.watch_changes)
            task_group.start_soon(self.ops.run)  # the audit writer
            if self.code is not None:  # warm interpreters load while the gateway serves; stopped on the way out
                stack.push_async_callback(self.code.aclose)
                task_group.start_soon(self.code.start)
            self._stack = stack.pop_all()
        try:  # (outside the task group, so that the error surfaces as itself)
            self.check_toolsets(starting=True)
        except ConfigError as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A semantic index still being built in a worker thread stops first (between chunks of embeddings).
        # Shielded: when leaving on cancellation an unshielded await would raise here, before the task
        # group entered in __aenter__ is left, and corrupt the caller's cancel scopes.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.index.close)
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.push_async_callback(self.ops.aclose)
            try:
                await stack.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                # The background task group wraps the caller's own exception: let the original propagate.
                if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                    return
                raise

    def on_tools_changed(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (sync) whenever the catalog changes, e.g. to notify connected clients."""
        self._listeners.append(listener)

    def _on_catalog_changed(self, snapshot: CatalogSnapshot) -> None:
        self.index.update(snapshot, version=snapshot.version)
        self.has_examples = any(tool.examples for tool in snapshot)
        if self.toolsets and self._stack is not None:
            self.check_toolsets()  # (the first check, at start, may raise; later ones only log)
        for listener in self._listeners:
            listener()

    def check_toolsets(self, *, starting: bool = False) -> list[str]:
        """Check that every toolset rule, rename and description override selects a tool of the catalog now.

        With the catalog complete (no backend down, failed or holding tools for review), a problem at start is
        a `ConfigError` naming the rule; while some backend's tools are missing, only a warning (its tools may
        be the ones the rule wants), and the check runs again whenever the catalog changes. After the start a
        problem never stops the gateway: it is logged (once, as an error when the catalog is complete) and the
        toolset shows what it matches, possibly nothing.

        Returns:
            the problems found (empty when none).

        Raises:
            ConfigError: at start, with the catalog complete, listing every problem.
        """
        if not self.toolsets:
            return []
        snapshot = self.registry.snapshot
        problems = [str(p) for p in self.toolsets.problems(list(snapshot.tools.values()), self.registry.names())]
        missing = sorted({*snapshot.failures, *self.unavailable(), *(h.split(":", 1)[0] for h in snapshot.held)})
        if problems and starting and not missing:
            raise ConfigError("Toolsets that select nothing (fix the rule, or remove it):\n  " + "\n  ".join(problems))
        if problems != self._toolset_problems:
            for problem in problems:
                if missing:
                    logger.warning(
                        "%s, while the tools of %s are missing (down, failed or held); checked again when the "
                        "catalog changes",
                        problem,
                        ", ".join(missing),
                    )
                else:
                    logger.error("%s; the toolset shows what it matches until the configuration is fixed", problem)
        self._toolset_problems = problems
        return problems

    async def reload_capabilities(self) -> dict[str, LoadReport]:
        """Read every capabilities backend's files again now and reindex (what SIGHUP to `serve` does): every
        backend that reads files (`Reloadable`) but the skills, which `reload_skills` reads."""
        reports: dict[str, LoadReport] = {}
        for name in self.registry.names():
            backend = self.registry.get(name)
            if isinstance(backend, Reloadable) and backend is not self.skills:
                reports[name] = await backend.reload()
                await self.registry.refresh(name)
        return reports

    async def reload_skills(self) -> SkillReport | None:
        """Read the skills' files again now and reindex (SIGHUP to `serve` does this too); None without skills."""
        if self.skills is None:
            return None
        report = await self.skills.reload()
        await self.registry.refresh(self.skills.name)
        return report

    def _skill_backend(self, settings: SkillsSettings) -> SkillBackend:
        """The skills backend, running each step through this gateway as the caller."""
        host = SkillHost(
            run=self.run,
            catalog=lambda: self.registry.snapshot,
            may_see=lambda tool_id, ctx: self.access(ctx).may_see_tool(tool_id),
            unknown=lambda tool_id, ctx: self.ops.unknown_tool(tool_id, ctx),
        )
        paths = [self.config.resolve(p) for p in settings.paths]
        return SkillBackend(settings.namespace, paths, settings, host=host)

    # --- who sees what -------------------------------------------------------------------------

    def access(self, ctx: CallContext | None = None) -> Access:
        """What the caller (of `ctx`, else of the request being served) may see and reach: tools, namespaces,
        prompts, resources and resource templates, by the auth rules. Surfaces ask this for every listing,
        lookup and notice, and treat what it hides exactly as something that does not exist."""
        return self.ops.access(ctx)

    @property
    def requires_auth(self) -> bool:
        """Whether callers must authenticate (`ops.auth` is on): surfaces then describe and ask for credentials."""
        return self.ops.auth is not None

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """How a caller may authenticate here: `api_key` (X-API-Key, or a key as a bearer token) and `jwt` (bearer
        tokens), as configured; empty without auth."""
        if self.ops.auth is None:
            return ()
        settings = self.config.ops.auth
        return (*(("api_key",) if settings.api_keys else ()), *(("jwt",) if settings.jwt is not None else ()))

    def caller(self) -> Identity:
        """Who the request being served comes from (the local caller outside any request)."""
        return self.ops.caller()

    @contextlib.contextmanager
    def acting_as(self, who: Identity) -> Iterator[None]:
        """Answer as `who` inside the block: listings, lookups and calls see what `who` may see (for work a
        surface does away from the request that authenticated its caller, such as a task running on)."""
        token = current_identity.set(who)
        try:
            yield
        finally:
            current_identity.reset(token)

    def visible_skills(self, ctx: CallContext | None = None) -> list[dict[str, Any]]:
        """The skills the caller may use, as list_skills shows them: `[{id, name, description, kind, stepCount}]`
        (empty without skills)."""
        skills = self.skills
        if skills is None:
            return []
        access = self.access(ctx)
        rows = []
        for skill in skills.skills.by_name.values():
            tool_id = skills.tool_id(skill)
            if access.may_see_tool(tool_id):
                steps = len(skill.steps) if isinstance(skill, Recipe) else 0
                rows.append(
                    {
                        "id": tool_id,
                        "name": skill.name,
                        "description": skill.description,
                        "kind": skill.kind,
                        "stepCount": steps,
                    }
                )
        return rows

    # --- discovery ------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        intent: str | None = None,
    ) -> dict[str, Any]:
        """Ranked summaries for `query`: `{tools, total, confidence, nextCursor?, reason?}`.

        `confidence` (`strong`, `weak` or `none`) says how well the best match fits; `intent`, a sentence on
        what the caller is trying to do, helps the ranking. Tools of a backend that is down are marked
        `available: false` or left out, as `search.unavailable` says. The audit log records the search (not
        the query).
        """
        with self.ops.audited("search"):
            return self._search(query, limit=limit, cursor=cursor, namespace=namespace, tags=tags, intent=intent)

    def _search(
        self,
        query: str,
        *,
        limit: int | None,
        cursor: str | None,
        namespace: str | None,
        tags: Sequence[str],
        intent: str | None,
    ) -> dict[str, Any]:
        check_search_text(query, intent, namespace, tags)  # before anything reads them whole
        if not query.strip():
            raise InvalidRequestError(
                "The query is empty. Describe what you want to do in a few words (for example 'convert units'), "
                "or call list_tools to browse.",
                op="search_tools",
            )
        limit = check_limit(limit or self.config.search.default_limit, "search_tools")
        access = self.access()
        visible = self.ops.visibility(access)
        scope = cursors.scope("search", cursors.rights(visible), query, namespace, intent, *tags)
        offset = cursors.offset_of(cursor, scope, self.index.version, "search_tools")
        unavailable = self.unavailable()
        if visible is not None and (namespace is not None or unavailable):
            # The index's reasons name namespaces (unknown ones, those down): only those the caller sees.
            counts = self.ops.visible_namespaces(access=access)
            if namespace is not None and not counts.get(namespace):
                known = ", ".join(sorted(counts)[:20]) or "none"
                reason = f"No namespace '{namespace}'. Known namespaces: {known}."
                return {"tools": [], "total": 0, "reason": reason, "confidence": "none"}
            unavailable = {ns: why for ns, why in unavailable.items() if counts.get(ns)}
        page = self.index.search(
            query if access.view is None else access.view.catalog_query(query),
            limit=limit,
            offset=offset,
            namespace=namespace,
            tags=tags,
            intent=intent,
            unavailable=unavailable,
            hide_unavailable=self.config.search.unavailable == "hide",
            visible=visible,
        )
        result = self._page_result(page, scope, "tools", access)
        result["confidence"] = page.confidence.value
        if not self.index.ready:  # ranked by the stand-in (BM25) while the semantic index is built: say so
            result["strategy"] = self.index.serving
            warming = self.index.warming
            if warming is not None:
                result["warming"] = f"{int(warming * 100)}%"
        return result

    def unavailable(self) -> dict[str, str]:
        """Namespace -> why its backend is down, for every backend that cannot run calls now."""
        out = {}
        for name, error in self._stopped():
            # Neither secrets nor command lines (the error may quote its stderr or its arguments).
            why = self.redactor.text(self.ops.health.scrub(error))
            out[name] = f"backend '{name}' is down ({why}); retry later or use another tool"
        return out

    def backend_failures(self) -> dict[str, str]:
        """Backend name -> a line for its operator on why it serves no tools: it could not start (or stopped),
        or listing its tools failed. With the command it ran, but no configured secret."""
        stopped = dict(self._stopped())
        failures = self.registry.snapshot.failures
        out = {}
        for name in self.registry.names():
            if name in stopped:
                out[name] = f"backend '{name}' could not start: {stopped[name]}"
            elif name in failures:
                out[name] = f"backend '{name}' could not list its tools: {failures[name]}"
        return {name: self.redactor.text(line) for name, line in out.items()}

    def _stopped(self) -> Iterator[tuple[str, str]]:
        """(name, why) of each backend that cannot run calls now (see `Availability`): it could not start, or it
        stopped."""
        for name in self.registry.names():
            backend = self.registry.get(name)
            why = backend.down_reason() if isinstance(backend, Availability) else None
            if why is not None:
                yield name, why

    def list_tools(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        namespace: str | None = None,
        backend_kind: str | None = None,
    ) -> dict[str, Any]:
        """Summaries in catalog order: `{tools, total, nextCursor?}`."""
        limit = check_limit(limit or 50, "list_tools")
        access = self.access()
        visible = self.ops.visibility(access)
        scope = cursors.scope("list", cursors.rights(visible), namespace, backend_kind)
        offset = cursors.offset_of(cursor, scope, self.index.version, "list_tools")
        page = self.index.page(
            limit=limit, offset=offset, namespace=namespace, backend_kind=backend_kind, visible=visible
        )
        return self._page_result(page, scope, "tools", access)

    async def list_namespaces(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Namespaces with their tool counts and backend health.

        With auth rules, only namespaces the caller may see, counting only the tools it may see: one with
        tools, none of them visible, is left out; one with no tools (its backend down) unless its rules
        forbid the caller the whole namespace (`ns:*`).
        """
        limit = check_limit(limit or 50, "list_namespaces")
        access = self.access()
        scope = cursors.scope("namespaces", cursors.rights(self.ops.visibility(access)))
        offset = cursors.offset_of(cursor, scope, self.index.version, "list_namespaces")
        counts = self.index.namespaces()
        names = self.registry.names()
        if not access.unrestricted:
            visible = self.ops.visible_namespaces(access=access)
            names = [n for n in names if visible.get(n) or (not counts.get(n) and access.may_see_namespace(n))]
            counts = dict(visible)
        health = await self.registry.health_check(timeout=2.0)
        snapshot = self.registry.snapshot
        rows = []
        for name in names:
            backend = self.registry.get(name)
            status = health.get(name)
            rows.append(
                {
                    "namespace": name,
                    "tool_count": counts.get(name, 0),
                    "backend_kind": backend.kind if backend else "",
                    "healthy": bool(status and status.healthy) and name not in snapshot.failures,
                    "message": self.redactor.text(self.ops.health.message(name, status)),
                }
            )
        chunk = rows[offset : offset + limit]
        result: dict[str, Any] = {"namespaces": chunk, "total": len(rows)}
        if offset + limit < len(rows):
            result["nextCursor"] = cursors.issue(self.index.version, offset + limit, scope)
        return result

    def get_tool(self, tool_id: str, op: str) -> Tool:
        """The tool for an id (a version suffix must match when the tool has one).

        Raises:
            InvalidToolIdError, UnknownToolError: with the closest ids (for a bare name, the ids with that name).
        """
        if ToolId.is_bare_name(tool_id):
            unknown = self.ops.unknown_tool(tool_id)
            unknown.op = op
            raise unknown
        parsed = ToolId.parse(tool_id)
        access = self.access()
        # The id as the caller knows it: in a toolset view, a renamed tool's new id (and never its old one).
        # (Or, in a toolset view, the tool it would be if its backend listed it: a backend down is said so.)
        key = access.find(parsed.key) or access.find_absent(parsed.key)
        tool = self.index.get(key) if key is not None else None
        # A tool the caller may not run is one it does not see: not whether it is held or down, nor in the
        # "did you mean" of another miss, which names only visible tools.
        if key is None or tool is None or (parsed.version is not None and tool.version not in (None, parsed.version)):
            if key is not None:
                try:
                    raise_unavailable_or_unknown(tool_id, parsed, self.registry.snapshot)
                except UnknownToolError:
                    pass  # suggested again below, among the tools this caller may see
                except ApertureError as error:  # held for review, or its backend is down
                    error.op = op
                    raise
            unknown = self.ops.unknown_tool(tool_id)
            unknown.op = op
            raise unknown
        return access.present(tool)

    def describe(self, tool_id: str, detail_level: str = "schema", examples_max: int | None = None) -> dict[str, Any]:
        """The tool's documentation at a detail level (`summary`, `schema`, `full`); recorded in the audit log."""
        with self.ops.audited("describe", tool_id):
            level = DetailLevel(detail_level)
            count = MAX_EXAMPLES if examples_max is None else max(0, min(examples_max, MAX_EXAMPLES))
            return describe(self.get_tool(tool_id, "describe_tool"), level, examples_max=count)

    def examples(self, tool_id: str, max_examples: int = 3) -> dict[str, Any]:
        """Up to `max_examples` worked calls of a tool."""
        tool = self.get_tool(tool_id, "list_tool_examples")
        examples = [e.to_dict() for e in tool.examples[: max(1, min(max_examples, MAX_EXAMPLES))]]
        result: dict[str, Any] = {"tool_id": tool.key, "examples": examples}
        if not examples:
            result["note"] = "This tool has no examples; describe_tool with detail_level 'schema' shows its parameters."
        return result

    def approve(self, tool_ids: Sequence[str] = (), *, every: bool = False) -> list[str]:
        """Approve the current definitions of held tools (the ids given, or all with `every`).

        Raises:
            InvalidRequestError: for an id that is not held.
        """
        held = self.registry.snapshot.held
        missing = [t for t in tool_ids if t not in held]
        if missing:
            raise InvalidRequestError(
                f"Not held for review: {', '.join(missing)}. Held now: {', '.join(held) or 'none'}.", op="approve"
            )
        chosen = list(held) if every else list(tool_ids)
        approved = self.guard.approve(held[key].tool for key in chosen)
        self.registry.republish()
        return approved

    # --- toolsets -------------------------------------------------------------------------------

    def serves_toolset(self, name: str) -> bool:
        """Whether a request through toolset `name` (`/mcp/{name}`) is served for the current caller: always
        for a caller bound to toolsets (it sees its own whatever it names), else when `name` is configured."""
        return bool(self.ops.bound_toolsets(self.ops.caller())) or name in self.toolsets

    def usable_toolsets(self) -> list[str]:
        """The names of the toolsets the current caller may use: its bound ones when it is bound, else all."""
        return self.ops.usable_toolsets()

    def list_toolsets(self) -> dict[str, Any]:
        """The toolsets the caller may use (its bound ones when it is bound, else all), as the reference server
        lists them: `{toolsets: [{id, name, description, toolCount}]}`, counting the tools the caller sees."""
        rows = []
        for name in self.ops.usable_toolsets():
            config = self.toolsets.configs[name]
            count = len(self.ops.visible_in(name))
            rows.append({"id": config.id, "name": name, "description": config.description, "toolCount": count})
        return {"toolsets": rows}

    def describe_toolset(self, toolset_id: str) -> dict[str, Any]:
        """One toolset the caller may use, with the summaries of its tools (as the toolset shows them):
        `{toolset: {id, name, description, toolCount, tools}}`; at most `MAX_TOOLSET_TOOLS` tools.

        Raises:
            InvalidRequestError: for a toolset the caller may not use, named like one that does not exist.
        """
        usable = self.ops.usable_toolsets()
        name = toolset_id.strip().removeprefix(TOOLSET_ID_PREFIX)
        if name not in usable:
            known = ", ".join(self.toolsets.configs[n].id for n in usable) or "none"
            raise InvalidRequestError(
                f"No toolset {shorten(toolset_id)!r}. Toolsets: {known} (list_toolsets describes them).",
                op="describe_toolset",
            )
        config = self.toolsets.configs[name]
        tools = list(self.ops.visible_in(name).values())
        summaries = [
            {k: v for k, v in ToolSummary.of(tool, 0.0).to_dict().items() if k != "score"}
            for tool in tools[:MAX_TOOLSET_TOOLS]
        ]
        detail: dict[str, Any] = {
            "id": config.id,
            "name": name,
            "description": config.description,
            "toolCount": len(tools),
            "tools": summaries,
        }
        if len(tools) > MAX_TOOLSET_TOOLS:
            detail["note"] = (
                f"The first {MAX_TOOLSET_TOOLS} of {len(tools)} tools; search_tools or list_tools at "
                f"{self.config.server.path}/{name} page through all of them."
            )
        return {"toolset": detail}

    # --- execution ------------------------------------------------------------------------------

    async def run(self, tool_id: str, args: Any, ctx: CallContext | None = None) -> RunResult:
        """Run a tool; failures come back as a failed `RunResult`, never as an exception."""
        return await self._run(ToolCall(tool_id=tool_id, args=args, ctx=ctx or CallContext()))

    async def run_chain(
        self,
        steps: Sequence[ChainStep],
        ctx: CallContext | None = None,
        *,
        include_backends: bool = True,
        include_tools: bool = False,
    ) -> ChainResult:
        """Run `steps` in order, each as `run` runs a tool (the caller's rights, limits, cache, audit), within
        the `chain:` limits; stops at the first failing step.

        Raises:
            InvalidRequestError: a chain refused before any step runs (empty, too long).
        """
        ctx = ctx or CallContext()
        return await run_chain(
            steps,
            run=self.run,
            find=lambda tool_id: self._visible_tool(tool_id, ctx),
            ctx=ctx,
            settings=self.config.chain,
            include_backends=include_backends,
            include_tools=include_tools,
        )

    def may_execute_code(self) -> bool:
        """Whether code mode is on and the current caller has a role it allows."""
        if self.code is None:
            return False
        roles = self.code.settings.roles
        return not roles or self.ops.caller().allows(roles, [])

    async def execute_code(
        self,
        code: str,
        ctx: CallContext | None = None,
        *,
        timeout_ms: int | None = None,
        max_tool_calls: int | None = None,
    ) -> Outcome:
        """Run `code` in the configured runtime; each bridged call runs as `search`, `describe` and `run` do for
        the caller of `ctx` (in the caller's request context: its identity and toolset), so the program reaches
        only what its caller could.

        Raises:
            InvalidRequestError: code mode is off.
        """
        if self.code is None:
            raise InvalidRequestError("Code mode is off here (execution.code.enabled is false).", op="execute_code")
        call = ctx or CallContext()
        limits = self.code.settings.limits(timeout_ms=timeout_ms, max_tool_calls=max_tool_calls)

        async def on_call(method: str, params: dict[str, Any]) -> Any:
            return await self._bridged(method, params, call)

        with self.ops.audited("execute_code"):
            return await self.code.run(code, limits, on_call)

    async def _bridged(self, method: str, params: dict[str, Any], call: CallContext) -> Any:
        """One tool call from a program: its JSON answer, or an `ApertureError` the program gets as ToolError."""
        if method == "search":
            query, limit = params.get("query"), params.get("limit", 10)
            if not isinstance(query, str) or not isinstance(limit, int) or isinstance(limit, bool):
                raise InvalidRequestError("tools.search(query, limit) takes a string and an integer.")
            return self.search(query, limit=limit)
        tool_id = params.get("tool_id")
        if not isinstance(tool_id, str):
            raise InvalidRequestError(f"tools.{method} takes the tool id as a string, e.g. 'namespace:name'.")
        if method == "describe":
            level = params.get("detail_level", "schema")
            if level not in ("summary", "schema", "full"):
                raise InvalidRequestError("detail_level is one of summary, schema, full.")
            return self.describe(tool_id, level)
        result = await self.run(tool_id, params.get("args") or {}, call)
        if result.is_error:
            raise result.error or ApertureError(result.text or f"Tool '{tool_id}' failed.")
        return result.structured if result.structured is not None else result.text

    def _visible_tool(self, tool_id: str, ctx: CallContext) -> Tool | None:
        """The tool behind `tool_id` if the caller of `ctx` may see it, else None (as if it did not exist)."""
        try:
            parsed = ToolId.parse(tool_id)
        except ApertureError:
            return None
        tool = self.index.get(parsed.key)
        if tool is None or (parsed.version is not None and tool.version not in (None, parsed.version)):
            return None
        return tool if self.access(ctx).may_see_tool(parsed.key) else None

    # --- cursors --------------------------------------------------------------------------------

    def _page_result(self, page: SearchPage, scope: str, key: str, access: Access) -> dict[str, Any]:
        # The index left out what the caller may not see (`visible`, before paging); a toolset view that renames
        # tools or changes their descriptions shows its own.
        changed = access.view.changed if access.view is not None else frozenset()
        hits = [(access.summarize(hit) if hit.id in changed else hit).to_dict() for hit in page.hits]
        result: dict[str, Any] = {key: hits, "total": page.total}
        if page.next_offset is not None:
            result["nextCursor"] = cursors.issue(self.index.version, page.next_offset, scope)
        if page.reason:
            result["reason"] = page.reason
        return result


def _index(config: Config) -> ToolIndex:
    """The tool index for `search.strategy`; a dense or hybrid one is built in the background behind BM25."""
    configured = config.search.strategy
    name = resolve_strategy(configured)
    if configured == "auto":
        if name == "hybrid":
            logger.info("search strategy: hybrid (auto: the semantic extra is installed)")
        else:
            logger.info("search strategy: bm25 (auto: the semantic extra is not installed, so no semantic search)")
    else:
        logger.info("search strategy: %s", name)
    if name not in ("hybrid", "semantic"):
        return ToolIndex(strategy_named(name))
    strategy: SearchStrategy = strategy_named(name, cache_dir=config.embedding_cache())
    return ToolIndex(strategy, fallback=BM25Strategy())
