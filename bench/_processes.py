"""Helpers the benchmarks share: free loopback ports, server processes, percentiles, result files."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APERTURE = str(Path(sys.executable).parent / "aperture")
RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_process(argv: list[str], port: int, timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends, once it accepts connections on `port`."""
    process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"{argv[0]} did not listen on port {port} within {timeout:g} s")
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_results(name: str, data: Any) -> Path:
    """Write a benchmark's figures to bench/results/NAME.json and return the path."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(data, indent=2))
    return out


Call = Callable[[], Awaitable[None]]
"""One timed call of a benchmark row (it raises when the call failed)."""


@dataclass
class Row:
    """A benchmark row: its call and the latencies (ms) recorded so far."""

    label: str
    call: Call
    latencies: list[float] = field(default_factory=list)

    async def once(self, record: bool = True) -> None:
        started = time.perf_counter()
        await self.call()
        if record:
            self.latencies.append((time.perf_counter() - started) * 1000)

    def figures(self) -> dict[str, Any]:
        return {
            "row": self.label,
            "calls": len(self.latencies),
            "p50_ms": round(percentile(self.latencies, 0.5), 3),
            "p99_ms": round(percentile(self.latencies, 0.99), 3),
            "mean_ms": round(statistics.fmean(self.latencies), 3),
        }


async def interleaved(
    rows: Sequence[Row],
    calls: int,
    *,
    rounds: int = 10,
    warmup: int = 50,
    advance: Callable[[], None] | None = None,
) -> None:
    """Warm every row up (`warmup` calls, not recorded), then call them in alternating rounds until each has
    `calls` latencies, so drift of a noisy machine hits all rows alike; `advance` after each recorded call."""
    for row in rows:
        for _ in range(warmup):
            await row.once(record=False)
    per_round = max(1, calls // rounds)
    while any(len(r.latencies) < calls for r in rows):
        for row in rows:
            for _ in range(min(per_round, calls - len(row.latencies))):
                await row.once()
                if advance is not None:
                    advance()
