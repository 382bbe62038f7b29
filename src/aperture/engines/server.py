"""An engine on its own: an MCP server over stdio, and the command line around it.

if __name__ == "__main__":
    engine.main()          # python -m my_engine --mcp | --version | --list | TOOL '{"json": "args"}'
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types

from aperture.engines.engine import Engine, EngineResult
from aperture.model import ApertureError
from aperture.model.adapters import to_mcp

if TYPE_CHECKING:
    from mcp.server import Server
    from mcp.server.context import ServerRequestContext

logger = logging.getLogger(__name__)


def mcp_server(engine: Engine) -> Server[Any]:
    """The engine's tools behind the SDK's MCP server: list them, call them, every failure an error result."""
    from mcp.server import Server  # only when serving: --version and one-off calls start faster without it

    engine.check()
    listing = [to_mcp(tool.to_tool(engine.name), name=tool.name) for tool in engine.tools.values()]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=listing)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        return _to_mcp(await answer(engine, params.name, params.arguments, ctx.session.report_progress))

    server: Server[Any] = Server(
        engine.name,
        version=engine.version,
        instructions=engine.description or None,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    server.middleware = []  # no per-message tracing span for a local engine
    return server


async def answer(engine: Engine, tool: str, args: Any, progress: Any = None) -> EngineResult:
    """One call, whatever happens: failures become error results that say what to fix."""
    try:
        if args is not None and not isinstance(args, dict):
            raise TypeError(f"arguments must be a JSON object, got {type(args).__name__}")
        return await engine.call(tool, args, progress)
    except ApertureError as exc:
        return EngineResult(text=exc.message, structured={"error": exc.to_dict()}, is_error=True)
    except TypeError as exc:
        return EngineResult(text=f"Invalid call: {exc}.", is_error=True)
    except Exception as exc:  # the boundary: an engine bug must not take the server down
        logger.exception("engine %s: tool %s failed unexpectedly", engine.name, tool)
        text = f"Internal error in engine '{engine.name}': {type(exc).__name__}: {exc}"
        return EngineResult(text=text, is_error=True)


def _to_mcp(result: EngineResult) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=result.text)],
        structured_content=result.structured,
        is_error=result.is_error,
    )


async def serve_stdio(engine: Engine) -> None:
    """Serve the engine over stdio until the client hangs up."""
    from mcp.server.stdio import stdio_server

    server = mcp_server(engine)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _parser(engine: Engine) -> argparse.ArgumentParser:
    tools = ", ".join(engine.tools) or "none yet"
    first = next(iter(engine.tools), "build")
    parser = argparse.ArgumentParser(
        prog=f"python -m {_module_name()}",
        description=f"{engine.name} {engine.version}: {engine.description or 'an engine'} (tools: {tools})",
        epilog=(
            "Examples:\n"
            f"  %(prog)s --mcp                      serve over stdio (what an MCP client or the gateway starts)\n"
            f"  %(prog)s --list                     the tools and what they do\n"
            f"  %(prog)s {first} '{{...}}'              call one tool and print its answer\n"
            "ARGS may also be @file.json or - (read standard input). Exit status: 0 success, 1 error result."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mcp", action="store_true", help="serve the engine as an MCP server over stdio")
    parser.add_argument("--version", action="store_true", help="print the engine's name and version")
    parser.add_argument("--list", action="store_true", help="list the tools with their descriptions")
    parser.add_argument("tool", nargs="?", help="a tool to call once: " + tools)
    parser.add_argument("args", nargs="?", default="{}", help="its arguments as JSON (default: {})")
    return parser


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name).removesuffix(".__main__")
    return Path(sys.argv[0]).stem


def _read_args(text: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    return json.loads(text)


def main(engine: Engine, argv: Sequence[str] | None = None) -> int:
    """The engine's command line; returns the exit status."""
    parser = _parser(engine)
    options = parser.parse_args(argv)
    if options.version:
        print(f"{engine.name} {engine.version}")
        return 0
    try:
        engine.check()
    except ApertureError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if options.mcp:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        anyio.run(serve_stdio, engine)
        return 0
    if options.list:
        for tool in engine.tools.values():
            print(f"{tool.name:<12} {tool.description}")
        return 0
    if options.tool is None:
        parser.print_help()
        return 2
    try:
        args = _read_args(options.args)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: ARGS must be a JSON object, @file.json or -: {exc}", file=sys.stderr)
        return 2
    result = anyio.run(answer, engine, options.tool, args)
    print(result.text)
    return 1 if result.is_error else 0
