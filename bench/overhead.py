"""Gateway overhead: the same trivial tool called directly and through Aperture, side by side in one run.

The upstream is the project's fixture MCP server (`echo`). For stdio: the official client starts the
upstream directly, or starts `aperture serve` whose backend starts the upstream. For streamable HTTP:
the client calls the upstream's endpoint, or Aperture's endpoint whose backend calls the upstream's.
Aperture is measured with the tool listed directly (passthrough) and through `run_tool` (meta).
Prints a table and writes bench/results/overhead.json.

    .venv/bin/python -m bench.overhead [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench._processes import APERTURE, ROOT, free_port, http_process, percentile, write_results

UPSTREAM = ROOT / "tests" / "fixtures" / "upstream_server.py"
console = Console()


async def measure(
    target: Any, tool: str, args: dict[str, Any], calls: int, label: str, progress: Progress
) -> dict[str, Any]:
    task = progress.add_task(label, total=calls)
    latencies: list[float] = []
    async with Client(target) as client:
        for _ in range(20):  # warm-up
            await client.call_tool(tool, args)
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool(tool, args)
            latencies.append((time.perf_counter() - started) * 1000)
            if result.is_error:
                raise RuntimeError(f"{label}: call failed: {result.content}")
            progress.advance(task)
    return {
        "row": label,
        "calls": calls,
        "p50_ms": round(percentile(latencies, 0.5), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


def config(path: Path, expose: str, upstream: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"server": {"expose": expose}, "mcpServers": {"up": upstream}}))
    return path


async def run(calls: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    echo = {"text": "hello"}
    stdio_upstream = {"command": sys.executable, "args": [str(UPSTREAM)]}
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console, transient=True) as progress:
        work = Path(tmp)
        direct = StdioServerParameters(command=sys.executable, args=[str(UPSTREAM)])
        rows.append(await measure(direct, "echo", echo, calls, "direct, stdio", progress))
        for expose, tool, args in (
            ("passthrough", "up__echo", echo),
            ("meta", "run_tool", {"tool_id": "up:echo", "args": echo}),
        ):
            cfg = config(work / f"{expose}.json", expose, stdio_upstream)
            gateway = StdioServerParameters(command=APERTURE, args=["serve", "--config", str(cfg)])
            rows.append(await measure(gateway, tool, args, calls, f"aperture {expose}, stdio", progress))

        upstream_port, gateway_port = free_port(), free_port()
        with http_process([sys.executable, str(UPSTREAM), "--http", str(upstream_port)], upstream_port):
            upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
            rows.append(await measure(upstream_url, "echo", echo, calls, "direct, HTTP", progress))
            for expose, tool, args in (
                ("passthrough", "up__echo", echo),
                ("meta", "run_tool", {"tool_id": "up:echo", "args": echo}),
            ):
                cfg = config(work / f"http-{expose}.json", expose, {"url": upstream_url})
                argv = [APERTURE, "serve", "--config", str(cfg), "--transport", "http", "--port", str(gateway_port)]
                with http_process(argv, gateway_port):
                    url = f"http://127.0.0.1:{gateway_port}/mcp"
                    rows.append(await measure(url, tool, args, calls, f"aperture {expose}, HTTP", progress))
    for row in rows:
        base = next(r for r in rows if r["row"] == ("direct, HTTP" if "HTTP" in row["row"] else "direct, stdio"))
        row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3)
    return rows


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
