"""Session churn: many connect -> list -> call -> close cycles against the gateway's HTTP endpoint.

Checks that file descriptors, threads, memory and live objects of the gateway process come back to
baseline, i.e. that sessions do not leak. The gateway serves the example catalog. Clients open
handshake-era sessions (`--mode legacy`, the default: sessions the gateway keeps state for) or speak
2026-07-28 (`--mode auto`). Object counts come from the gateway process itself (`bench._counted_server`,
after a full collection). Prints a table and writes bench/results/churn.json.

    .venv/bin/python -m bench.churn [--cycles 1000] [--concurrency 4] [--mode legacy|auto]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench._processes import ROOT, free_port, http_process, write_results

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


def object_counts(pid: int, path: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Live objects of the gateway process, after a full collection: asks it (SIGUSR1) and reads its answer."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway wrote no object counts to {path} within {timeout:g} s")
        time.sleep(0.05)
    counts: dict[str, Any] = json.loads(path.read_text())
    return counts


def grown(before: dict[str, int], after: dict[str, int], top: int = 8) -> dict[str, int]:
    """The object types whose counts grew most."""
    growth = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return dict(sorted(((n, g) for n, g in growth.items() if g > 0), key=lambda item: -item[1])[:top])


async def cycle(url: str, mode: str) -> None:
    async with Client(url, mode=mode) as client:
        await client.list_tools()
        result = await client.call_tool("run_tool", {"tool_id": "toolbox:calculate", "args": {"expression": "1+1"}})
        if result.is_error:
            raise RuntimeError(f"call failed: {result.content}")


async def churn(url: str, cycles: int, concurrency: int, mode: str, progress: Progress) -> float:
    task = progress.add_task(f"{cycles} sessions", total=cycles)
    limiter = anyio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one() -> None:
        async with limiter:
            await cycle(url, mode)
            progress.advance(task)

    async with anyio.create_task_group() as tg:
        for _ in range(cycles):
            tg.start_soon(one)
    return time.perf_counter() - started


async def run(cycles: int, concurrency: int, mode: str) -> dict[str, Any]:
    port = free_port()
    config = ROOT / "examples" / "aperture.yaml"
    counts_file = Path(tempfile.mkdtemp(prefix="churn-")) / "objects.json"
    argv = [sys.executable, "-m", "bench._counted_server", str(counts_file)]
    argv += ["serve", "--config", str(config), "--transport", "http", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/mcp"
    with http_process(argv, port) as process, Progress(console=console, transient=True) as progress:
        await churn(url, 50, concurrency, mode, progress)  # warm-up: imports, caches, pools
        await anyio.sleep(1)
        objects_before = await anyio.to_thread.run_sync(object_counts, process.pid, counts_file)
        baseline = usage(process.pid)
        seconds = await churn(url, cycles, concurrency, mode, progress)
        await anyio.sleep(2)  # let closed sessions be torn down
        objects_after = await anyio.to_thread.run_sync(object_counts, process.pid, counts_file)
        after = usage(process.pid)
    baseline["objects"], after["objects"] = objects_before["total"], objects_after["total"]
    return {
        "cycles": cycles,
        "concurrency": concurrency,
        "mode": mode,
        "seconds": round(seconds, 2),
        "sessions_per_s": round(cycles / seconds, 1),
        "baseline": baseline,
        "after": after,
        "grown": grown(objects_before["by_type"], objects_after["by_type"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--mode", choices=["legacy", "auto"], default="legacy", help="legacy: handshake-era sessions; auto: 2026-07-28"
    )
    args = parser.parse_args()
    result = anyio.run(run, args.cycles, args.concurrency, args.mode)
    table = Table(
        title=f"Session churn: {result['cycles']} connect-list-call-close cycles ({result['mode']}), "
        f"{result['concurrency']} at a time"
    )
    for column in ("measure", "baseline", "after", "change"):
        table.add_column(column, justify="right")
    for key in ("fds", "threads", "rss_mb", "objects"):
        before, after = result["baseline"][key], result["after"][key]
        table.add_row(key, str(before), str(after), f"{after - before:+g}")
    table.add_row("sessions/s", "", str(result["sessions_per_s"]), "")
    console.print(table)
    if result["grown"]:
        console.print("objects that grew most: " + ", ".join(f"{n} {g:+d}" for n, g in result["grown"].items()))
    console.print(f"wrote {write_results('churn', result)}")


if __name__ == "__main__":
    main()
