"""What a large upstream answer costs everyone else: while one stdio upstream sends a 60 MiB answer,
another upstream's small calls go on through the same gateway; their latency, and the longest stall of the
event loop, are measured beside a baseline without the large answer. A second table cuts the same bytes
into lines with the reader the gateway used before (`buffer += chunk`, then split all of it) and with
today's `LineSplitter`, side by side. Prints the tables and writes bench/results/upstream_output.json.

    .venv/bin/python -m bench.upstream_output [--megabytes 60] [--old-megabytes 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from aperture.config import parse_config
from aperture.execution.backends._lines import LineSplitter
from aperture.gateway import Gateway
from bench._processes import percentile, write_results

console = Console()
UPSTREAM = str(Path(__file__).parent / "_big_upstream.py")
TICK = 0.005
MAX_SECONDS = 120.0
MAX_CALLS = 20_000
CHUNK = 65536


class Probe:
    """Small calls back to back on one upstream, and a ticker that records how late the event loop wakes it."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.lags_ms: list[float] = []

    async def calls(self, gateway: Gateway, until: anyio.Event) -> None:
        while not until.is_set() and len(self.latencies_ms) < MAX_CALLS:
            started = time.perf_counter()
            await gateway.run("small:echo", {"text": "ping"})
            self.latencies_ms.append((time.perf_counter() - started) * 1000)

    async def ticker(self, until: anyio.Event) -> None:
        while not until.is_set():
            started = time.perf_counter()
            await anyio.sleep(TICK)
            self.lags_ms.append(max(0.0, (time.perf_counter() - started - TICK) * 1000))

    def summary(self) -> dict[str, float]:
        return {
            "calls": len(self.latencies_ms),
            "p50_ms": statistics.median(self.latencies_ms),
            "p99_ms": percentile(self.latencies_ms, 0.99),
            "max_ms": max(self.latencies_ms),
            "loop_stall_max_ms": max(self.lags_ms),
        }


async def probe_while(gateway: Gateway, work: Any) -> tuple[Probe, float]:
    probe, done = Probe(), anyio.Event()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe.calls, gateway, done)
        tg.start_soon(probe.ticker, done)
        await work()
        done.set()
    return probe, time.perf_counter() - started


async def end_to_end(megabytes: int) -> dict[str, Any]:
    upstream = {"kind": "mcp", "command": [sys.executable, UPSTREAM]}
    config = parse_config(
        {
            "backends": [{"name": "big", **upstream}, {"name": "small", **upstream}],
            "search": {"strategy": "bm25"},
            "execution": {"timeout": MAX_SECONDS},
        }
    )
    with anyio.fail_after(MAX_SECONDS * 2):
        async with Gateway(config) as gateway:
            for _ in range(200):  # warm up
                await gateway.run("small:echo", {"text": "warm"})
            baseline, _ = await probe_while(gateway, lambda: anyio.sleep(2))
            answer: dict[str, Any] = {}

            async def large() -> None:
                result = await gateway.run("big:big", {"megabytes": megabytes})
                assert not result.is_error, result.content
                answer["bytes"] = sum(len(getattr(block, "text", "")) for block in result.content)

            during, seconds = await probe_while(gateway, large)
    assert answer["bytes"] == megabytes * 1024 * 1024
    return {"baseline": baseline.summary(), "during": during.summary(), "large_call_seconds": seconds}


def old_reader(chunks: list[bytes]) -> int:
    """The reader before the fix, verbatim: grow one bytes object, split all of it on every chunk."""
    buffer = b""
    count = 0
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        count += len(lines)
    return count


def new_reader(chunks: list[bytes]) -> int:
    splitter = LineSplitter(1 << 40)
    return sum(len(splitter.feed(chunk)) for chunk in chunks)


def readers(megabytes: int, old_megabytes: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, reader, size in (
        ("before (bytes +=)", old_reader, old_megabytes),
        ("LineSplitter", new_reader, megabytes),
    ):
        chunks = [b"x" * CHUNK] * (size * 1024 * 1024 // CHUNK) + [b"\n"]
        started = time.process_time()
        assert reader(chunks) == 1
        results[name] = {"megabytes": size, "cpu_seconds": time.process_time() - started}
    return results


async def main(megabytes: int, old_megabytes: int) -> None:
    e2e = await end_to_end(megabytes)
    table = Table(title=f"small calls on another upstream while a {megabytes} MiB answer arrives (stdio, in process)")
    for column in ("phase", "calls", "p50 ms", "p99 ms", "max ms", "longest loop stall ms"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    for phase in ("baseline", "during"):
        row = e2e[phase]
        table.add_row(
            phase,
            str(row["calls"]),
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['max_ms']:.1f}",
            f"{row['loop_stall_max_ms']:.1f}",
        )
    console.print(table)
    console.print(f"the {megabytes} MiB call took {e2e['large_call_seconds']:.2f} s")
    cut = readers(megabytes, old_megabytes)
    table = Table(title="cutting one line of N MiB, read in 64 KiB chunks, into lines (CPU seconds)")
    for column in ("reader", "MiB", "CPU s"):
        table.add_column(column, justify="right" if column != "reader" else "left")
    for name, row in cut.items():
        table.add_row(name, str(row["megabytes"]), f"{row['cpu_seconds']:.3f}")
    console.print(table)
    path = write_results("upstream_output", {"end_to_end": e2e, "readers": cut})
    console.print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--old-megabytes", type=int, default=60, help="the old reader is quadratic: 60 takes ~20 s")
    options = parser.parse_args()
    anyio.run(main, options.megabytes, options.old_megabytes)
