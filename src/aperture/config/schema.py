"""The configuration file's schema: one pydantic model per section, every field described."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from aperture.compose import ChainSettings, ToolsetConfig
from aperture.compose.skills.settings import SkillsSettings
from aperture.config.a2a import A2aConfig
from aperture.config.kinds import BackendConfig, InheritEnv, Section, check_inherit_env, on_kinds_changed
from aperture.discovery import default_cache_dir, semantic_available
from aperture.discovery.embedding import INSTALL_HINT
from aperture.execution.backends.mcp_env import DEFAULT_INHERITED_ENV, INHERIT_ALL
from aperture.execution.code import CodeSettings
from aperture.ops.settings import OpsSettings


def _patterns(value: InheritEnv) -> tuple[str, ...]:
    if value is True:
        return DEFAULT_INHERITED_ENV
    if value is False:
        return ()
    if value == "all":
        return INHERIT_ALL
    return (*DEFAULT_INHERITED_ENV, *value)


class SessionsConfig(Section):
    """Limits on streamable-HTTP sessions, so that no one client can fill the gateway's session table."""

    max_per_identity: int = Field(
        64,
        ge=1,
        description="Open sessions one caller may hold, its 2026-07-28 subscriptions/listen streams included: per "
        "authenticated identity when ops.auth is on, per client address when it is off. Past it, opening another "
        "answers 429.",
    )
    max_total: int = Field(
        10_000, ge=1, description="Open sessions and listen streams of all callers together. Past it, 503."
    )
    idle_timeout: float = Field(
        600.0,
        gt=0,
        description="Seconds a session may go without a request in flight (an open GET stream counts as one) "
        "before it is closed; its id then answers 404 and the client opens a new session.",
    )
    initialize_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a new session has to send notifications/initialized; a session that does not has "
        "its open requests (a GET stream, say) ended, and is closed that long after its last request.",
    )
    event_store_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Bytes of messages (as JSON) a session keeps for clients that resume a broken SSE stream; "
        "the oldest go first.",
    )


class ServerConfig(Section):
    """How the gateway is reached."""

    name: str = Field("aperture", description="The server name MCP clients see.")
    transport: Literal["stdio", "http", "a2a"] = Field(
        "stdio", description="stdio; streamable HTTP (with A2A beside it, server.a2a); or a2a: A2A alone over HTTP."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP transport binds; loopback unless told otherwise.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP transport.")
    path: str = Field("/mcp", pattern=r"^/", description="URL path of the MCP endpoint.")
    expose: Literal["meta", "passthrough", "both"] = Field(
        "meta", description="What tools/list shows: the meta-tools, every tool directly, or both."
    )
    separator: str = Field(
        "__", pattern=r"^[A-Za-z0-9_-]{1,4}$", description="Joins namespace and name in passthrough."
    )
    surfaced: list[str] = Field(default_factory=list, description="Tool ids listed directly in any mode.")
    namespaced: bool = Field(
        True, description="Prefix directly listed tools and prompts with their namespace; false keeps upstream names."
    )
    sse_poll_after: float | None = Field(
        None,
        gt=0,
        description="HTTP: close a call's SSE stream after this many seconds (the client resumes it with "
        "Last-Event-ID and gets the result), so long calls survive proxies that cut idle connections.",
    )
    sessions: SessionsConfig = Field(
        default_factory=SessionsConfig, description="HTTP: limits on sessions per caller and in total, and expiry."
    )
    max_header_bytes: int = Field(
        65536,
        ge=4096,
        le=16 * 1024 * 1024,
        description="HTTP: most bytes a request's line and headers may take together; past it the answer is 431.",
    )
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds calls in flight may take to finish after SIGTERM; those still running then are "
        "answered with a shutting_down error before the gateway stops.",
    )
    a2a: A2aConfig = Field(
        default_factory=A2aConfig, description="HTTP: the Agent2Agent surface beside MCP (docs/a2a.md)."
    )


class SearchConfig(Section):
    """How search_tools ranks tools (see docs/search.md)."""

    strategy: Literal["auto", "hybrid", "semantic", "bm25", "lexical"] = Field(
        "auto",
        description="auto: hybrid when the semantic extra is installed, else bm25. hybrid: BM25 fused with "
        "semantic search. semantic: embeddings alone (not recommended: weaker than bm25 on some catalogs). "
        "bm25: field-boosted BM25. lexical: weighted word overlap.",
    )
    default_limit: int = Field(10, ge=1, le=100, description="Results per page when the caller gives no limit.")
    cache_dir: str | None = Field(
        None,
        description="Where tool embeddings are cached, relative to this file (default: .aperture/embeddings "
        "beside the configuration file, or the user cache directory without one).",
    )
    warm_wait: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Seconds a search waits for the semantic index while it is first built (embedding a "
        "large catalog takes a while); after that it answers from BM25 and says so (strategy, warming).",
    )
    unavailable: Literal["mark", "hide"] = Field(
        "mark",
        description="Tools of a backend that is down: mark them in results (available: false, with the reason), "
        "or hide them.",
    )

    @field_validator("strategy")
    @classmethod
    def _extra_installed(cls, value: str) -> str:
        if value in ("hybrid", "semantic") and not semantic_available():
            raise ValueError(
                f"the '{value}' strategy needs the 'semantic' extra, which is not installed. Install it with: "
                f"{INSTALL_HINT}; or choose 'auto' (hybrid when the extra is installed, else bm25) or 'bm25'"
            )
        return value


class ExecutionConfig(Section):
    """How run_tool runs tools."""

    timeout: float = Field(30.0, gt=0, description="Default seconds a tool call may take.")
    inherit_env: InheritEnv = Field(
        True,
        description="Variables of the gateway's environment every stdio upstream gets. true: the default list "
        "(PATH, HOME, locale, certificates, proxies, XDG_* ...; docs/configuration.md); a list of names or globs: "
        "the default list and these; false: none; all: every one, the gateway's own secrets included. A backend's "
        "inherit_env adds to this, or replaces it with false or all.",
    )

    code: CodeSettings = Field(
        default_factory=CodeSettings,
        description="Code mode: the execute_code meta-tool, off unless enabled (docs/code-mode.md).",
    )

    _valid_inherit_env = field_validator("inherit_env")(classmethod(lambda cls, v: check_inherit_env(v)))

    def inherited(self, backend: InheritEnv = True) -> tuple[str, ...]:
        """The names and globs a stdio upstream whose own setting is `backend` inherits."""
        if backend is False or backend == "all":
            return _patterns(backend)
        shared = _patterns(self.inherit_env)
        return shared if backend is True else (*shared, *backend)


class IntegrityConfig(Section):
    """What happens when an upstream changes a tool's definition after it was first seen."""

    policy: Literal["hold", "warn", "accept"] = Field(
        "hold", description="hold: keep the tool out until approved; warn: serve and log; accept: serve and re-approve."
    )
    store: str = Field(".aperture/fingerprints.json", description="Approved fingerprints, relative to this file.")
    kinds: list[str] = Field(
        default_factory=lambda: ["mcp", "grpc"], description="Backend kinds whose tools are checked."
    )
    new_tools: Literal["accept", "hold"] = Field(
        "accept",
        description="A tool a backend adds after its first listing: accept (serve it, trusted on first use) or "
        "hold (keep it out of search, describe and run until `aperture tools approve`).",
    )


class Config(Section):
    """The whole gateway configuration (one YAML file)."""

    server: ServerConfig = ServerConfig()
    backends: list[BackendConfig] = Field(default_factory=list)
    search: SearchConfig = SearchConfig()
    execution: ExecutionConfig = ExecutionConfig()
    integrity: IntegrityConfig = IntegrityConfig()
    ops: OpsSettings = Field(
        default_factory=OpsSettings, description="Auth, resilience, cache, observe, health (docs/operations.md)."
    )
    chain: ChainSettings = Field(
        default_factory=ChainSettings, description="Limits on run_chain: steps and total time (docs/composition.md)."
    )
    skills: SkillsSettings | None = Field(
        None, description="Recipe and instruction skills, served as tools skills:<name> (docs/composition.md)."
    )
    toolsets: list[ToolsetConfig] = Field(
        default_factory=list,
        description="Named views of the catalog, each served at /mcp/<name> and bindable to keys, roles and "
        "claims (docs/composition.md).",
    )
    base_dir: Path = Field(Path("."), exclude=True, description="Directory relative paths are resolved against.")
    config_file: Path | None = Field(None, exclude=True, description="The file this came from, if any.")
    secret_values: tuple[str, ...] = Field(
        (),
        exclude=True,
        repr=False,
        description="Credentials taken from the environment (`${VAR}` under auth, headers, env, metadata or a key "
        "named like a secret), set by the loader: redacted from results, errors and logs.",
    )

    @model_validator(mode="after")
    def _unique_backend_names(self) -> Config:
        seen: set[str] = set()
        for backend in self.backends:
            if backend.name in seen:
                raise ValueError(f"two backends are named '{backend.name}'; names must be unique (they are namespaces)")
            seen.add(backend.name)
        if self.skills is not None and self.skills.namespace in seen:
            raise ValueError(
                f"skills.namespace '{self.skills.namespace}' is also a backend's name; give the skills another "
                "namespace (or rename the backend), since both name tool ids"
            )
        return self

    @model_validator(mode="after")
    def _toolsets_known(self) -> Config:
        names = [t.name for t in self.toolsets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two toolsets are named '{twice[0]}'; names must be unique (they are URL paths)")
        auth = self.ops.auth
        bound = [(f"ops.auth.api_keys[{i}] ('{k.name}')", k.toolsets) for i, k in enumerate(auth.api_keys)]
        bound += [(f"ops.auth.bindings[{i}]", b.toolsets) for i, b in enumerate(auth.bindings)]
        for where, toolsets in bound:
            unknown = [t for t in toolsets if t not in names]
            if unknown:
                known = ", ".join(names) or "none are configured (add a top-level toolsets: section)"
                raise ValueError(
                    f"{where} is bound to toolset '{unknown[0]}', which is not configured; toolsets: {known}"
                )
        return self

    def state_path(self, path: str) -> Path | None:
        """Where to keep state such as fingerprints: beside the configuration file, or nowhere without one."""
        if Path(path).expanduser().is_absolute() or self.config_file is not None:
            return self.resolve(path)
        return None

    def embedding_cache(self) -> Path:
        """The directory of the embedding cache: `search.cache_dir`, else beside the configuration file, else
        the user cache directory."""
        if self.search.cache_dir is not None:
            return self.resolve(self.search.cache_dir)
        return self.state_path(".aperture/embeddings") or default_cache_dir()

    def resolve(self, path: str) -> Path:
        """A path from the file, resolved against the file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()


def _rebuild() -> None:
    """Accept the backend kinds registered now (and no others) in `backends:`."""
    Config.model_rebuild(force=True)


on_kinds_changed(_rebuild)
