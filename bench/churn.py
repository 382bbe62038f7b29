"""Session churn: many connect -> list -> call -> close cycles against the gateway's HTTP endpoint.

Checks that file descriptors, threads and memory of the gateway process come back to baseline, i.e. that
sessions do not leak. The gateway serves the example catalog. Prints a table and writes
bench/results/churn.json.

    .venv/bin/python -m bench.churn [--cycles 1000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench._processes import APERTURE, ROOT, free_port, http_process, write_results

console = Console()


def usage(pid: int) -> dict[str, float]:
    """Open file descriptors, threads and resident memory (MB) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
    }


async def cycle(url: str) -> None:
    async with Client(url) as client:
        await client.list_tools()
        result = await client.call_tool("run_tool", {"tool_id": "toolbox:calculate", "args": {"expression": "1+1"}})
        if result.is_error:
            raise RuntimeError(f"call failed: {result.content}")


async def churn(url: str, cycles: int, concurrency: int, progress: Progress) -> float:
    task = progress.add_task(f"{cycles} sessions", total=cycles)
    limiter = anyio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one() -> None:
        async with limiter:
            await cycle(url)
            progress.advance(task)

    async with anyio.create_task_group() as tg:
        for _ in range(cycles):
            tg.start_soon(one)
    return time.perf_counter() - started


async def run(cycles: int, concurrency: int) -> dict[str, Any]:
    port = free_port()
    config = ROOT / "examples" / "aperture.yaml"
    argv = [APERTURE, "serve", "--config", str(config), "--transport", "http", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/mcp"
    with http_process(argv, port) as process, Progress(console=console, transient=True) as progress:
        await churn(url, 50, concurrency, progress)  # warm-up: imports, caches, pools
        await anyio.sleep(1)
        baseline = usage(process.pid)
        seconds = await churn(url, cycles, concurrency, progress)
        await anyio.sleep(2)  # let closed sessions be torn down
        after = usage(process.pid)
    return {
        "cycles": cycles,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "sessions_per_s": round(cycles / seconds, 1),
        "baseline": baseline,
        "after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = anyio.run(run, args.cycles, args.concurrency)
    table = Table(
        title=f"Session churn: {result['cycles']} connect-list-call-close cycles, {result['concurrency']} at a time"
    )
    for column in ("measure", "baseline", "after", "change"):
        table.add_column(column, justify="right")
    for key in ("fds", "threads", "rss_mb"):
        before, after = result["baseline"][key], result["after"][key]
        table.add_row(key, str(before), str(after), f"{after - before:+g}")
    table.add_row("sessions/s", "", str(result["sessions_per_s"]), "")
    console.print(table)
    console.print(f"wrote {write_results('churn', result)}")


if __name__ == "__main__":
    main()
