"""The `aperture` command line: serve the gateway, or search, describe and run tools from a shell."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

import aperture
from aperture.config import Config, load_config
from aperture.discovery import SearchStrategy, ToolIndex, default_strategy, strategy_named
from aperture.execution import FieldDiff, RunResult
from aperture.gateway import Gateway
from aperture.model import ApertureError, BackendUnavailableError, ConfigError, InvalidRequestError

T = TypeVar("T")
PID_FILE = ".aperture/serve.pid"

app = typer.Typer(
    name="aperture",
    help="Aperture: one MCP endpoint in front of many tool backends.\n\n"
    "Agents find tools with search_tools, learn them with describe_tool and run them with run_tool. "
    "The commands below do the same from a shell, against the backends in your configuration file.\n\n"
    "Start with:  aperture serve --config examples/aperture.yaml",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $APERTURE_CONFIG, then ./aperture.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def _setup_logging(level: str) -> None:
    # Logs go to stderr: on the stdio transport, stdout is the protocol.
    handler = RichHandler(console=err, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("aperture").setLevel(level.upper())


def _load(config: Path | None) -> Config:
    try:
        return load_config(config)
    except ApertureError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from None


def _event_loop_options() -> dict[str, Any]:
    """uvloop when it is installed (a dependency on Linux): its event loop costs less per message."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


_M_MMAP_THRESHOLD = -3  # (glibc's mallopt parameter)


def _map_large_blocks() -> None:
    """glibc: blocks of 128 KiB and more get a mapping of their own, handed back to the system when freed.

    By default the threshold rises to the largest block freed so far, so once the catalog embedding has freed its
    tensors, later ones land in the worker threads' malloc arenas, where what is freed stays resident in holes
    that `malloc_trim` cannot hand back: a hybrid gateway on the peers' catalog held 195 MB after its start in
    some runs and 220-226 MB in others; with the threshold fixed, 194-196 in every run, search latency the same
    (docs/benchmarks.md). An operator's `MALLOC_MMAP_THRESHOLD_` wins; elsewhere than glibc, nothing happens.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


def _with_gateway(config: Config, work: Callable[[Gateway], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Gateway(config) as gateway:
            return await work(gateway)

    try:
        return anyio.run(main)
    except ApertureError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None


def _with_catalog(config: Config, work: Callable[[Gateway], Awaitable[T]]) -> tuple[T, list[str]]:
    """`_with_gateway` for a command that reads the catalog, which is incomplete when a backend could not start:
    also one line for each such backend, to print after the answer (`_fail_if_incomplete`). When `work` fails,
    those lines follow its error (a missing tool may be missing because its backend is down)."""
    failures: list[str] = []

    async def noting_failures(gateway: Gateway) -> T:
        try:
            return await work(gateway)
        finally:
            failures.extend(gateway.backend_failures().values())

    try:
        return _with_gateway(config, noting_failures), failures
    except typer.Exit:
        _fail_if_incomplete(failures)
        raise


def _fail_if_incomplete(failures: list[str]) -> None:
    """Exit 1 naming each backend that could not start (`serve` runs on without them; a one-shot command
    answering from part of the catalog must not look like a complete answer)."""
    for line in failures:
        err.print(f"[red]error:[/red] {escape(line)}")
    if failures:
        raise typer.Exit(1)


def _version(value: bool) -> None:
    if value:
        out.print(f"aperture {aperture.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (to stderr).")
    ] = "warning",
) -> None:
    _setup_logging(log_level)


def _a2a_surface(gateway: Gateway, *, required: bool = False) -> Any:
    """The A2A surface to serve over HTTP: None when `server.a2a.enabled` is false, or when the `a2a` extra is
    not installed (said once, as a warning). Beside MCP it loads the SDK on its first request (`OnDemandA2a`:
    a gateway whose clients speak only MCP never holds it); alone, now.

    Raises:
        ConfigError: `required` (A2A alone) and it cannot be served.
    """
    if not gateway.config.server.a2a.enabled and not required:
        return None
    if not required:
        from aperture.surface.a2a.on_demand import OnDemandA2a

        if importlib.util.find_spec("a2a") is not None:
            return OnDemandA2a(gateway)
        err.print(
            "[yellow]warning:[/yellow] A2A is not served: the 'a2a' extra is not installed (no module named 'a2a'); "
            "install it with .venv/bin/pip install -e '.[a2a]', or set server.a2a.enabled: false"
        )
        return None
    try:
        from aperture.surface.a2a.app import A2aSurface
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"--transport a2a needs the 'a2a' extra ({exc}); install it with .venv/bin/pip install -e '.[a2a]'"
        ) from None
    return A2aSurface(gateway)


@app.command()
def serve(
    config: ConfigOption = None,
    transport: Annotated[
        Literal["stdio", "http", "a2a"] | None,
        typer.Option(
            help="stdio, http (MCP, and A2A beside it) or a2a (A2A alone, over HTTP) (default: server.transport "
            "in the configuration)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="HTTP bind address (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default: server.port, 8080).")] = None,
    toolset: Annotated[
        str | None,
        typer.Option(
            help="stdio: serve only this toolset (a named view from the toolsets: section). Over HTTP every "
            "toolset is served at /mcp/<name>."
        ),
    ] = None,
) -> None:
    """Serve the gateway over MCP (stdio for a desktop client, http for many clients at /mcp, each toolset at
    /mcp/<name>, with A2A beside it at /a2a), or over A2A alone (a2a).

    The configuration is Aperture's YAML, or a client's JSON file as it is: mcpServers (Claude Desktop, Cursor,
    Windsurf, Claude Code's .mcp.json) or VS Code's mcp.json (servers).
    SIGTERM or Ctrl-C stops the gateway and every upstream it started.
    """
    from aperture.surface.mcp import Termination, serve_http, serve_stdio, until_terminated
    from aperture.surface.mcp.transport import bind_listener, exposure_warning

    _map_large_blocks()
    cfg = _load(config)
    server = cfg.server.model_copy(
        update={k: v for k, v in {"transport": transport, "host": host, "port": port}.items() if v is not None}
    )
    if toolset is not None:
        names = [t.name for t in cfg.toolsets]
        if toolset not in names:
            known = ", ".join(names) or "none are configured (add a toolsets: section)"
            err.print(f"[red]error:[/red] no toolset {escape(repr(toolset))} in the configuration; toolsets: {known}")
            raise typer.Exit(2)
        if server.transport != "stdio":
            err.print(f"[red]error:[/red] --toolset is for stdio; over HTTP the toolset is at {server.path}/{toolset}")
            raise typer.Exit(2)

    async def run(gateway: Gateway, termination: Termination) -> None:
        tools = len(gateway.index)
        if server.transport in ("http", "a2a"):
            # Bound before it is announced: a taken port is one line (ConfigError), never "MCP at" and a traceback.
            # (Not before the gateway starts: an open port tells scripts the gateway is up and handles SIGTERM.)
            if (warning := exposure_warning(server.host, auth_enabled=cfg.ops.auth.enabled)) is not None:
                err.print(f"[yellow]warning:[/yellow] {escape(warning)}")
            alone = server.transport == "a2a"
            a2a = _a2a_surface(gateway, required=alone)
            listener = bind_listener(server.host, server.port)
            if not alone:
                err.print(f"aperture: {tools} tools, MCP at http://{server.host}:{server.port}{server.path}")
            if a2a is not None:
                err.print(f"aperture: A2A at http://{server.host}:{server.port}{a2a.path} (agent card at /.well-known)")
            try:
                await serve_http(
                    gateway,
                    host=server.host,
                    port=server.port,
                    path=server.path,
                    termination=termination,
                    listener=listener,
                    beside=a2a.beside if a2a is not None else None,
                    mcp=not alone,
                )
            finally:
                if a2a is not None:
                    with anyio.CancelScope(shield=True):
                        await a2a.aclose()
        else:
            logging.getLogger("aperture").info("serving %d tools on stdio", tools)
            await serve_stdio(gateway, termination, toolset=toolset)

    async def main(termination: Termination) -> None:
        with _pid_file(cfg):
            async with Gateway(cfg) as gateway, anyio.create_task_group() as tg:
                tg.start_soon(_reload_on_sighup, gateway)
                await run(gateway, termination)
                tg.cancel_scope.cancel()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            anyio.run(until_terminated, main, backend_options=_event_loop_options())
        except ApertureError as exc:
            err.print(f"[red]error:[/red] {escape(exc.message)}")
            raise typer.Exit(1) from None
        except BaseExceptionGroup as group:  # raised inside the gateway's task groups (a taken port)
            found: BaseException | None = group.subgroup(ApertureError)
            while isinstance(found, BaseExceptionGroup):
                found = found.exceptions[0]
            if not isinstance(found, ApertureError):
                raise
            err.print(f"[red]error:[/red] {escape(found.message)}")
            raise typer.Exit(1) from None


tools_app = typer.Typer(
    help="List the catalog, and review tools held back: changed since approval, or new (integrity.new_tools: hold).",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(tools_app, name="tools")


@tools_app.callback()
def tools(
    ctx: typer.Context,
    config: ConfigOption = None,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List every tool in the catalog (held tools are listed by `aperture tools pending`)."""
    if ctx.invoked_subcommand is not None:
        return
    result, failures = _with_catalog(_load(config), lambda g: _async(lambda: _all_tools(g, namespace)))
    if as_json:
        out.print_json(data=result)
    else:
        table = Table(title=f"{len(result)} tools")
        table.add_column("id", no_wrap=True, style="bold")
        table.add_column("description")
        table.add_column("tags")
        for row in result:
            table.add_row(row["id"], row["short_description"], ", ".join(row["tags"]))
        out.print(table)
    _fail_if_incomplete(failures)


@tools_app.command("pending")
def tools_pending(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show tools held for review: changed since approval (each changed field, with the changed words in colour,
    or marked [-old-]{+new+} when piped), or new since their backend's first listing (with their whole
    definition)."""

    held, failures = _with_catalog(_load(config), lambda g: _async(lambda: dict(g.registry.snapshot.held)))
    if as_json:
        rows = [
            {"id": key, "new": change.new, "changed": change.changed_fields, "diff": change.diff}
            for key, change in held.items()
        ]
        out.print_json(data=rows)
    elif not held:
        out.print("No tools are held for review.")
    else:
        for key, change in held.items():
            changed = ", ".join(change.changed_fields)
            why = "is new since its backend's first listing" if change.new else f"changed: {changed}"
            out.print(f"[bold yellow]{escape(key)}[/bold yellow] {why}")
            _print_changes(change.changes)
        out.print(f"\nApprove with: aperture tools approve {' '.join(held)}")
    _fail_if_incomplete(failures)


_DIFF_STYLE = {"same": "", "removed": "bold red strike", "added": "bold green underline", "skipped": "dim"}


def _print_changes(changes: list[FieldDiff]) -> None:
    """Each field's changes, whole and wrapped to the width: changed words in colour, or, without colours (piped
    output), marked `[-old-]{+new+}`."""
    plain = out.color_system is None
    for change in changes:
        out.print(f"  [bold]{escape(change.field)}[/bold]")
        for line in change.lines:
            text = Text()
            for span in line:
                text.append(span.plain() if plain else span.text, _DIFF_STYLE[span.kind])
            if not text:
                out.print()
                continue
            for piece in text.wrap(out, max(20, out.width - 4)):
                piece.rstrip()
                out.print(Text.assemble("    ", piece))


@tools_app.command("approve")
def tools_approve(
    tool_ids: Annotated[list[str] | None, typer.Argument(help="Held tool ids to approve.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Approve every held tool.")] = False,
    config: ConfigOption = None,
) -> None:
    """Approve the current definitions of held tools, so they are served again."""
    if not tool_ids and not every:
        err.print("[red]error:[/red] name the tools to approve, or pass --all (see: aperture tools pending)")
        raise typer.Exit(2)
    approved, failures = _with_catalog(_load(config), lambda g: _async(lambda: g.approve(tool_ids or (), every=every)))
    out.print(f"Approved {len(approved)} tool(s): {', '.join(approved) or 'none were held'}")
    _fail_if_incomplete(failures)


@contextlib.contextmanager
def _pid_file(config: Config) -> Iterator[None]:
    """Beside the configuration file, so `aperture capabilities reload` finds the running gateway."""
    path = config.state_path(PID_FILE)
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(os.getpid()))
    try:
        yield
    finally:
        if path is not None:
            with contextlib.suppress(OSError):
                if path.read_text().strip() == str(os.getpid()):
                    path.unlink()


async def _reload_on_sighup(gateway: Gateway) -> None:
    with anyio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            for name, report in (await gateway.reload_capabilities()).items():
                logging.getLogger("aperture").warning("reloaded capabilities %s: %s", name, report.summary())
            skills = await gateway.reload_skills()
            if skills is not None:
                logging.getLogger("aperture").warning("reloaded skills: %s", skills.summary())


capabilities_app = typer.Typer(
    help="REST capabilities (YAML files): check them, pin them, reload a running gateway.", no_args_is_help=True
)
app.add_typer(capabilities_app, name="capabilities")


@capabilities_app.command("check")
def capabilities_check(
    directories: Annotated[
        list[Path] | None, typer.Argument(help="Directories to check (default: those in the configuration).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load capability files as the gateway would and list them, with every problem (path:line: reason).

    Exit code 1 when a file has an error (it would be skipped), 2 when there is nothing to check.
    """
    from aperture.config import CapabilitiesBackendConfig
    from aperture.execution.capabilities import CapabilityLoader

    if directories:
        targets = {"capabilities": list(directories)}
    else:
        cfg = _load(config)
        targets = {
            b.name: [cfg.resolve(d) for d in b.all_directories()]
            for b in cfg.backends
            if isinstance(b, CapabilitiesBackendConfig)
        }
        if not targets:
            err.print("[red]error:[/red] the configuration has no capabilities backend; pass directories to check")
            raise typer.Exit(2)
    reports = {name: CapabilityLoader(name, dirs).load() for name, dirs in targets.items()}
    if as_json:
        data = {
            name: {
                "capabilities": [
                    {
                        "id": c.tool.key,
                        "file": str(c.path),
                        "providers": [f"{p.method} {_url_text(p)}" for p in c.providers],
                    }
                    for c in report.capabilities.by_name.values()
                ],
                "problems": [p.to_dict() for p in report.problems],
            }
            for name, report in reports.items()
        }
        out.print_json(data=data)
    for name, report in reports.items():
        if not as_json:
            table = Table(title=f"{name}: {escape(report.summary())}")
            table.add_column("id", no_wrap=True, style="bold")
            table.add_column("request")
            table.add_column("file")
            for cap in report.capabilities.by_name.values():
                first = cap.providers[0]
                table.add_row(cap.tool.key, escape(f"{first.method} {_url_text(first)}"), escape(str(cap.path)))
            out.print(table)
            for problem in report.problems:
                color = "red" if problem.severity == "error" else "yellow"
                out.print(f"[{color}]{escape(str(problem))}[/{color}]")
    if any(report.errors for report in reports.values()):
        raise typer.Exit(1)


def _url_text(provider: Any) -> str:
    return "".join(
        p if isinstance(p, str) else ("{env." + p.name + "}" if p.env else "{" + p.name + "}")
        for p in provider.url.parts
    )


@capabilities_app.command("pin")
def capabilities_pin(files: Annotated[list[Path], typer.Argument(help="Capability files to pin.")]) -> None:
    """Write (or update) each file's sha256 pin, after you reviewed it: a later change refuses to load."""
    from aperture.execution.capabilities import pin_digest

    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            err.print(f"[red]error:[/red] {escape(str(path))}: {escape(exc.strerror or str(exc))}")
            raise typer.Exit(2) from None
        digest = pin_digest(raw)
        text = raw.decode("utf-8")
        body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("sha256:"))
        path.write_text(f"sha256: {digest}\n{body}", encoding="utf-8")
        out.print(f"{escape(str(path))}: sha256 {digest}")


@capabilities_app.command("reload")
def capabilities_reload(
    config: ConfigOption = None,
    pid: Annotated[int | None, typer.Option(help="Process id of the gateway (default: from its pid file).")] = None,
) -> None:
    """Make a running `aperture serve` read its capability files again now (sends it SIGHUP).

    Without --pid, the pid comes from .aperture/serve.pid beside the configuration file, which serve writes.
    """
    if pid is None:
        cfg = _load(config)
        path = cfg.state_path(PID_FILE)
        try:
            pid = int(path.read_text().strip()) if path is not None else None
        except (OSError, ValueError):
            pid = None
        if pid is None:
            err.print(f"[red]error:[/red] no running gateway found ({path or PID_FILE} is missing); pass --pid")
            raise typer.Exit(2)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot signal process {pid}: {escape(exc.strerror or str(exc))}")
        raise typer.Exit(1) from None
    out.print(f"Asked the gateway (pid {pid}) to reload its capabilities.")


cache_app = typer.Typer(
    help="The result cache (ops.cache): clear it without restarting the gateway.", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear(
    tool: Annotated[
        str | None, typer.Option("--tool", help="Remove the results of one tool, namespace:name.", show_default=False)
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="Remove the results of every tool of a namespace.", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Remove every cached result.")] = False,
    config: ConfigOption = None,
) -> None:
    """Remove cached results, so the next calls run the tools again. Give one of --tool, --namespace or --all.

    Running gateways see the change at once (no restart): they share the store ops.cache configures.

    Works with the [bold]file[/bold] and [bold]redis[/bold] stores; prints how many results it removed.

    The [bold]memory[/bold] store lives inside each gateway process, out of reach: restart the gateway instead.

    Exit code 2 when there is nothing to clear from here (memory store, malformed id), 1 when Redis is down.

    Example: aperture cache clear --namespace github --config aperture.yaml
    """
    from aperture.ops import clear_store

    if (tool is not None) + (namespace is not None) + every != 1:
        err.print("[red]error:[/red] give exactly one of --tool ID, --namespace NS or --all (see --help)")
        raise typer.Exit(2)
    cfg = _load(config)
    cache = cfg.ops.cache
    try:
        removed = anyio.run(
            lambda: clear_store(cfg.ops, tool, namespace=namespace, everything=every, resolve_path=cfg.resolve)
        )
    except ApertureError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1 if isinstance(exc, BackendUnavailableError) else 2) from None
    what = f"tool {tool}" if tool else f"namespace {namespace}" if namespace else "every tool"
    if cache.store == "file":
        where = f"the file cache at {cfg.resolve(cache.directory)}"
    else:
        redis = cfg.ops.redis
        where = f"Redis at {redis.url} (keys {redis.prefix}cache:*)" if redis else "Redis"
    out.print(f"Removed {removed} cached result(s) of {escape(what)} from {escape(where)}.")


import_app = typer.Typer(help="Turn API descriptions into capability files.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("openapi")
def import_openapi(
    spec: Annotated[Path, typer.Argument(help="OpenAPI 3 document, JSON or YAML.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the capability files.")],
    base_url: Annotated[str | None, typer.Option(help="The API's URL, when the document has none.")] = None,
    env_prefix: Annotated[
        str | None, typer.Option(help="Prefix of the credential variables (default: from the title).")
    ] = None,
    output_schemas: Annotated[
        bool, typer.Option(help="Also map success responses to schema.output (results are then checked).")
    ] = False,
) -> None:
    """Write one capability file per operation: parameters, request body, auth and tags mapped."""
    from aperture.execution.capabilities.openapi import import_openapi as run_import

    try:
        result = run_import(spec, out_dir, base_url=base_url, env_prefix=env_prefix, output_schemas=output_schemas)
    except ApertureError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from None
    out.print(f"Wrote {len(result.written)} capability files to {escape(str(out_dir))}")
    for line in result.skipped:
        out.print(f"[yellow]skipped[/yellow] {escape(line)}")
    for note in result.notes:
        out.print(f"note: {escape(note)}")
    out.print(f"Check them with: aperture capabilities check {escape(str(out_dir))}")


def _all_tools(gateway: Gateway, namespace: str | None) -> list[dict[str, Any]]:
    """Every tool's definition, as `eval retrieval --tools` reads it back (so a catalog can be measured)."""
    page = gateway.index.page(limit=len(gateway.index) or 1, namespace=namespace)
    rows = []
    for hit in page.hits:
        tool = gateway.index.get(hit.id)
        if tool is None:  # gone since the page was read
            continue
        row: dict[str, Any] = {"id": tool.key, "name": tool.name, "namespace": tool.namespace}
        if tool.title:
            row["title"] = tool.title
        row |= {
            "short_description": tool.short_description,
            "description": tool.description,
            "tags": list(tool.tags),
            "backend_kind": tool.backend_kind,
            "input_schema": tool.input_schema,
        }
        rows.append(row)
    return rows


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What you want to do, in a few words.")],
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="Results to show.")] = 10,
    namespace: Annotated[str | None, typer.Option(help="Only this namespace.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Only tools with this tag (repeatable).")] = None,
    intent: Annotated[
        str | None,
        typer.Option(help="One sentence on what you are trying to achieve overall; it helps the ranking."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the catalog the way search_tools does, best match first, with how well the best one fits."""

    async def work(gateway: Gateway) -> dict[str, Any]:
        # One search from a shell: wait for the semantic index rather than answer from its BM25 stand-in.
        await anyio.to_thread.run_sync(_wait_for_index, gateway.index)
        return gateway.search(query, limit=limit, namespace=namespace, tags=tag or (), intent=intent)

    result, failures = _with_catalog(_load(config), work)
    if as_json:
        out.print_json(data=result)
    elif not result["tools"]:
        out.print(f"[yellow]No results.[/yellow] {escape(result.get('reason', ''))}")
    else:
        _print_hits(query, result)
    _fail_if_incomplete(failures)


def _wait_for_index(index: ToolIndex, console: Console = err) -> None:
    """Wait until the index serves with its own strategy, with a progress bar on stderr while tools are
    embedded (the first time, a large catalog takes a while; later runs read the embedding cache)."""
    if index.warming is None or index.wait_ready(0.5):
        return
    columns = (TextColumn("embedding tools"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("embed", total=len(index))
        while not index.wait_ready(0.2):
            bar.update(task, completed=int((index.warming or 0.0) * len(index)))


def _print_hits(query: str, result: dict[str, Any]) -> None:
    confidence = result.get("confidence", "none")
    table = Table(title=f"search: {escape(query)}", caption=f"confidence: {_CONFIDENCE_STYLE[confidence]}")
    table.add_column("#", justify="right")
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("score", justify="right")
    table.add_column("description")
    table.add_column("tags")
    for rank, hit in enumerate(result["tools"], 1):
        description = escape(hit["short_description"])
        if hit.get("available") is False:
            description = f"[red]unavailable:[/red] {escape(hit['unavailable_reason'])}. {description}"
        table.add_row(str(rank), escape(hit["id"]), f"{hit['score']:.2f}", description, escape(", ".join(hit["tags"])))
    out.print(table)
    if result.get("reason"):
        out.print(f"[yellow]{escape(result['reason'])}[/yellow]")


@app.command()
def health(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Readiness as /readyz reports it: each backend's state and latency, and shared state (Redis)."""

    async def work(gateway: Gateway) -> dict[str, Any]:
        return await gateway.ops.health.readiness()

    result = _with_gateway(_load(config), work)
    result.pop("audit", None)  # this command's own audit log, not the serving gateway's: see its /readyz
    if as_json:
        out.print_json(data=result)
    else:
        ready = result["status"] == "ready"
        table = Table(title=f"health: {'[green]ready[/green]' if ready else '[red]not ready[/red]'}")
        for column in ("backend", "state", "required", "latency ms", "message"):
            table.add_column(column)
        for row in result["backends"]:
            style = "green" if row["healthy"] else "red"
            latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.1f}"
            table.add_row(
                escape(row["name"]),
                f"[{style}]{escape(row['state'])}[/{style}]",
                "yes" if row["required"] else "no",
                latency,
                escape(row["message"]),
            )
        out.print(table)
        if "redis" in result:
            out.print(f"redis: {result['redis']['state']} {escape(result['redis']['message'])}")
    if result["status"] != "ready":
        raise typer.Exit(1)


_CONFIDENCE_STYLE = {
    "strong": "[green]strong[/green] (the first tool fits)",
    "weak": "[yellow]weak[/yellow] (check the descriptions)",
    "none": "[red]none[/red] (no tool fits this request)",
}


@app.command()
def describe(
    tool_id: Annotated[str, typer.Argument(help="The tool id, namespace:name.")],
    config: ConfigOption = None,
    detail: Annotated[str, typer.Option("--detail", "-d", help="summary, schema or full.")] = "full",
    as_json: JsonOption = False,
) -> None:
    """Show a tool's documentation and input schema."""
    if detail not in ("summary", "schema", "full"):
        err.print(f"[red]error:[/red] --detail must be summary, schema or full; got {escape(detail)!r}")
        raise typer.Exit(2)
    doc, failures = _with_catalog(_load(config), lambda g: _async(lambda: g.describe(tool_id, detail)))
    if as_json:
        out.print_json(data=doc)
    else:
        _print_doc(doc)
    _fail_if_incomplete(failures)


def _print_doc(doc: dict[str, Any]) -> None:
    out.print(f"[bold]{doc['id']}[/bold]  {escape(', '.join(doc['tags']))}")
    out.print(escape(doc["description"]))
    if "input_schema" in doc:
        from aperture.model.tool import parameters_of

        out.print("\n[bold]Parameters[/bold]")
        for param in parameters_of(doc["input_schema"]) or []:
            out.print(escape(param.render()))
    for example in doc.get("examples", []):
        out.print(f"\n[bold]Example:[/bold] {escape(example['description'])}")
        out.print_json(data=example["args"])


@app.command()
def run(
    tool_id: Annotated[str, typer.Argument(help="The tool id, namespace:name.")],
    args: Annotated[str, typer.Option("--args", "-a", help="Arguments as a JSON object.")] = "{}",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a tool and print its result (exit code 1 when the tool fails)."""
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] --args is not valid JSON ({exc}); pass an object like '{{\"a\": 1}}'")
        raise typer.Exit(2) from None
    result: RunResult = _with_gateway(_load(config), lambda g: g.run(tool_id, parsed))
    if as_json:
        data: dict[str, Any] = {"tool_id": result.tool_id, "is_error": result.is_error, "text": result.text}
        data["structured"] = result.structured
        if result.error is not None:
            data["error"] = result.error.to_dict()
        out.print_json(data=data)
    elif result.is_error:
        err.print(f"[red]{escape(result.text)}[/red]")
    else:
        out.print(escape(result.text))
    if result.is_error:
        raise typer.Exit(1)


eval_app = typer.Typer(
    help="Measure how well search finds the right tools on your own catalog and queries.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

_EVAL_LABELS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "ndcg@5": "nDCG@5",
    "ndcg@10": "nDCG@10",
    "completeness@5": "Comp@5",
    "completeness@10": "Comp@10",
}
_PROGRESS_FROM = 200  # queries; fewer finish before a bar is worth drawing


@eval_app.command("retrieval")
def eval_retrieval(
    tools_file: Annotated[
        Path,
        typer.Option(
            "--tools",
            help='JSON lines, one tool a line: {"id", "name", "namespace", "description", "input_schema", "tags"}; '
            "only id or name, and description, are required. What `aperture tools --json` prints works too.",
            show_default=False,
        ),
    ],
    queries_file: Annotated[
        Path,
        typer.Option(
            "--queries",
            help='JSON lines, one query a line: {"query": "...", "gold": ["namespace:name", ...]}, '
            'optionally "intent".',
            show_default=False,
        ),
    ],
    strategy: Annotated[
        str | None,
        typer.Option(help="Search strategy to measure (default: the one the gateway uses).", show_default=False),
    ] = None,
    misses: Annotated[
        int, typer.Option(min=0, help="Also list up to this many queries whose gold tools are not all in the top 5.")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Rank every query against the catalog, as search_tools would, and score the rankings.

    R@k: the share of a query's gold tools found in the top k. Comp@k: 1 when all of them are.

    nDCG@k: rewards gold tools ranked near the top. Latency: each search, in process, in milliseconds.

    Exit code 2 when a file is wrong; the message names the file, the line and the problem.
    """
    from aperture.discovery import evaluation

    try:
        chosen = _strategy(strategy)
        tools = evaluation.load_tools(tools_file, warn=_warn)
        queries = evaluation.load_queries(queries_file, tools, warn=_warn)
    except ApertureError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from None

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=len(queries) < _PROGRESS_FROM,
    )  # fmt: skip
    try:
        with progress:
            task = progress.add_task(f"{chosen.name}: {len(queries)} queries", total=len(queries))
            report = evaluation.evaluate(tools, queries, chosen, on_query=lambda: progress.advance(task))
    except ApertureError as exc:  # the strategy failed to build, e.g. an embedding model that will not load
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(data=report.to_dict())
        return
    title = f"retrieval: {report.tools} tools, {report.queries} queries, strategy {escape(report.strategy)}"
    table = Table(title=title)
    for name in report.metrics:
        table.add_column(_EVAL_LABELS.get(name, name), justify="right")
    table.add_row(*(f"{value:.3f}" for value in report.metrics.values()))
    out.print(table)
    latency = report.latency_ms
    out.print(
        f"search latency p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms; index built in "
        f"{report.build_ms:.0f} ms"
    )
    if misses:
        missed = report.misses(5)
        shown = f"; the first {min(misses, len(missed))}:" if missed else "."
        out.print(f"\n{len(missed)} of {report.queries} queries miss a gold tool in the top 5{shown}")
        for ranking in missed[:misses]:
            top = ", ".join(ranking.ids[:5]) or "nothing"
            out.print(
                f"  line {ranking.query.line}: {escape(ranking.query.query[:100])}\n"
                f"    gold {escape(', '.join(ranking.query.gold))}; got {escape(top)}"
            )


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def _strategy(name: str | None) -> SearchStrategy:
    """The strategy called `name`, or the gateway's default (hybrid with the semantic extra, else BM25)."""
    try:
        return default_strategy() if name is None else strategy_named(name)
    except (ValueError, ImportError) as exc:
        raise InvalidRequestError(f"--strategy: {exc}") from None


async def _async(fn: Callable[[], T]) -> T:
    return fn()


def main() -> None:
    """Entry point of the `aperture` command."""
    app(prog_name="aperture")


if __name__ == "__main__":
    main()
