"""Gateway overhead: the same trivial tool called directly and through Aperture, side by side in one run.

The upstream is the project's fixture MCP server (`echo`). For stdio: the official client starts the
upstream directly, or starts `aperture serve` whose backend starts the upstream. For streamable HTTP:
the client calls the upstream's endpoint, or Aperture's endpoint whose backend calls the upstream's.
Aperture is measured with the tool listed directly (passthrough) and through `run_tool` (meta). The
rows of a transport run interleaved, in rounds, so that drift on a noisy machine affects them alike.
Prints a table and writes bench/results/overhead.json.

    .venv/bin/python -m bench.overhead [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench._processes import APERTURE, ROOT, Call, Row, free_port, http_process, interleaved, write_results

UPSTREAM = ROOT / "tests" / "fixtures" / "upstream_server.py"
console = Console()


def tool_call(label: str, client: Client, tool: str, args: dict[str, Any]) -> Call:
    """Call `tool` on `client`; a failed call raises, naming the row."""

    async def call() -> None:
        result = await client.call_tool(tool, args)
        if result.is_error:
            raise RuntimeError(f"{label}: call failed: {result.content}")

    return call


def row(label: str, client: Client, tool: str, args: dict[str, Any]) -> Row:
    return Row(label, tool_call(label, client, tool, args))


def config(path: Path, expose: str, upstream: dict[str, Any]) -> Path:
    # BM25 search: the semantic index would otherwise load its model and embed the catalog in a worker
    # thread during the first measured calls; this bench is about forwarding, not search.
    body = {"server": {"expose": expose}, "search": {"strategy": "bm25"}, "mcpServers": {"up": upstream}}
    path.write_text(json.dumps(body))
    return path


ECHO = {"text": "hello"}


async def compare(
    transport: str, direct: Client, passthrough: Client, meta: Client, calls: int, progress: Progress
) -> list[dict[str, Any]]:
    """The same echo called directly, through Aperture listed directly, and through `run_tool`."""
    rows = [
        row(f"direct, {transport}", direct, "echo", ECHO),
        row(f"aperture passthrough, {transport}", passthrough, "up__echo", ECHO),
        row(f"aperture meta, {transport}", meta, "run_tool", {"tool_id": "up:echo", "args": ECHO}),
    ]
    task = progress.add_task(" / ".join(r.label for r in rows), total=calls * len(rows))
    await interleaved(rows, calls, warmup=20, advance=lambda: progress.advance(task))
    return [row.figures() for row in rows]


async def run(calls: int) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console, transient=True) as progress:
        work = Path(tmp)
        stdio_upstream = {"command": sys.executable, "args": [str(UPSTREAM)]}

        def gateway(expose: str) -> StdioServerParameters:
            cfg = config(work / f"{expose}.json", expose, stdio_upstream)
            return StdioServerParameters(command=APERTURE, args=["serve", "--config", str(cfg)])

        async with (
            Client(StdioServerParameters(command=sys.executable, args=[str(UPSTREAM)])) as direct,
            Client(gateway("passthrough")) as passthrough,
            Client(gateway("meta")) as meta,
        ):
            figures += await compare("stdio", direct, passthrough, meta, calls, progress)

        upstream_port, passthrough_port, meta_port = free_port(), free_port(), free_port()
        with http_process([sys.executable, str(UPSTREAM), "--http", str(upstream_port)], upstream_port):
            upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
            servers = []
            for expose, port in (("passthrough", passthrough_port), ("meta", meta_port)):
                cfg = config(work / f"http-{expose}.json", expose, {"url": upstream_url})
                servers.append(
                    ([APERTURE, "serve", "--config", str(cfg), "--transport", "http", "--port", str(port)], port)
                )
            with http_process(*servers[0]), http_process(*servers[1]):
                async with (
                    Client(upstream_url) as direct,
                    Client(f"http://127.0.0.1:{passthrough_port}/mcp") as passthrough,
                    Client(f"http://127.0.0.1:{meta_port}/mcp") as meta,
                ):
                    figures += await compare("HTTP", direct, passthrough, meta, calls, progress)
    for row in figures:
        base = next(r for r in figures if r["row"] == ("direct, HTTP" if "HTTP" in row["row"] else "direct, stdio"))
        row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per row")
    args = parser.parse_args()
    rows = anyio.run(run, args.calls)
    table = Table(title=f"Gateway overhead: {args.calls} sequential tools/call of echo")
    for column in ("row", "p50 ms", "p99 ms", "mean ms", "+p50 ms", "+p99 ms"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["row"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}",
            f"{r['added_p50_ms']:+.3f}", f"{r['added_p99_ms']:+.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"wrote {write_results('overhead', {'rows': rows})}")


if __name__ == "__main__":
    main()
