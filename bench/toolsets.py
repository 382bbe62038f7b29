"""What a toolset view costs a search: `Gateway.search` at 10k tools with no toolset and through toolsets,
side by side in one run.

The same queries go through four modes, interleaved query by query (in a random order each time), so that
drift on a busy machine hits them alike: `none`, the whole catalog, twice (`none (again)` is the noise floor: two
identical modes differ by this much), `toolset`, a toolset of half the namespaces, and `toolset + renames`,
the same toolset with 100 renamed tools and 100 description overrides. Each mode is warmed first, so its
view and visibility mask are built; what building them costs, once per catalog change, is the first search's
time. The whole is repeated in rounds: p50 and the mean are over all of them, p99 is the median of the rounds'
p99s, so that one burst of work from another process on a shared machine does not decide it (every round's
p99 is in the JSON). Prints a table and writes bench/results/toolsets.json.

    .venv/bin/python -m bench.toolsets [--tools 10000] [--queries 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from aperture.config import parse_config
from aperture.execution import BackendRegistry
from aperture.gateway import Gateway
from aperture.model import Tool
from aperture.ops.access import current_toolset
from bench._catalogs import StaticBackend, synthetic_queries, synthetic_tools
from bench._processes import percentile, write_results

console = Console()
MODES: dict[str, str | None] = {
    "none": None,
    "none (again)": None,
    "toolset": "half",
    "toolset + renames": "renamed",
}


@contextmanager
def through(toolset: str | None) -> Iterator[None]:
    token = current_toolset.set(toolset)
    try:
        yield
    finally:
        current_toolset.reset(token)


def toolsets(tools: list[Tool]) -> list[dict[str, Any]]:
    namespaces = sorted({t.namespace for t in tools})
    half = namespaces[::2]
    inside = [t for t in tools if t.namespace in half][:100]
    return [
        {"name": "half", "include": {"namespaces": half}},
        {
            "name": "renamed",
            "include": {"namespaces": half},
            "rename": {t.key: f"{t.name}_renamed" for t in inside},
            "descriptions": {t.key: f"Another description of {t.name}." for t in inside},
        },
    ]


async def measure(size: int, queries: int, rounds: int = 1) -> dict[str, Any]:
    tools = synthetic_tools(size)
    asked = synthetic_queries(tools, queries)
    registry = BackendRegistry()
    by_namespace: dict[str, list[Tool]] = defaultdict(list)
    for tool in tools:
        by_namespace[tool.namespace].append(tool)
    for namespace, own in by_namespace.items():
        await registry.register(StaticBackend(namespace, own))
    config = parse_config({"search": {"strategy": "bm25"}, "toolsets": toolsets(tools)})
    async with Gateway(config, registry=registry) as gateway:
        builds = {}
        for mode, toolset in MODES.items():  # the one-off work of a new catalog version: view and mask
            with through(toolset):
                started = time.perf_counter()
                gateway.search("warm up", limit=10)
                builds[mode] = (time.perf_counter() - started) * 1000
            with through(toolset):
                for query in asked[:50]:
                    gateway.search(f"{query} (warm-up)", limit=10)
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        round_p99s: dict[str, list[float]] = {mode: [] for mode in MODES}
        totals: dict[str, list[int]] = {mode: [] for mode in MODES}
        order = list(MODES)
        shuffle = random.Random(5).shuffle
        for _ in range(rounds):
            start = {mode: len(values) for mode, values in latencies.items()}
            for query in asked:
                shuffle(order)  # a mode run right after the same mode gets warm caches: no fixed order
                for mode in order:
                    with through(MODES[mode]):
                        t0 = time.perf_counter()
                        found = gateway.search(query, limit=10)
                        latencies[mode].append((time.perf_counter() - t0) * 1000)
                    totals[mode].append(found["total"])
            for mode, values in latencies.items():
                round_p99s[mode].append(percentile(values[start[mode] :], 0.99))
    rows = []
    for mode, values in latencies.items():
        rows.append(
            {
                "mode": mode,
                "tools": size,
                "queries": len(values),
                "p50_ms": round(percentile(values, 0.50), 4),
                "p99_ms": round(statistics.median(round_p99s[mode]), 4),
                "round_p99s_ms": [round(v, 4) for v in round_p99s[mode]],
                "mean_ms": round(statistics.fmean(values), 4),
                "mean_total": round(statistics.fmean(totals[mode]), 1),
                "first_search_ms": round(builds[mode], 2),
            }
        )
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=10_000, help="catalog size")
    parser.add_argument("--queries", type=int, default=2000, help="queries per mode and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; p99 is the median of the rounds' p99s")
    args = parser.parse_args()
    result = anyio.run(measure, args.tools, args.queries, args.rounds)
    rows = result["rows"]
    base = rows[0]
    title = f"Gateway.search through toolset views ({args.tools:,} tools, limit 10, {args.rounds} rounds, in process)"
    table = Table(title=title)
    for column in ("mode", "p50 ms", "p99 ms", "mean ms", "p99 vs none", "matches (mean)", "first search ms"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["mode"], f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}",
            f"{r['p99_ms'] - base['p99_ms']:+.3f}", f"{r['mean_total']:,.0f}", f"{r['first_search_ms']:.1f}",
        )  # fmt: skip
    console.print(table)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    console.print(f"wrote {write_results('toolsets', {'meta': meta, **result})}")


if __name__ == "__main__":
    main()
