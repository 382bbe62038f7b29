"""Search latency and index build rate on synthetic catalogs of 1k, 10k and 100k tools.

Side by side in one run: Aperture's BM25 (the default), the lexical strategy, and the same fields and
boosts scored by the `bm25s` package as a reference. Prints a table and
writes bench/results/search_latency.json.

    .venv/bin/python bench/search_latency.py [--sizes 1000,10000,100000] [--queries 500]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aperture.discovery import (
    DEFAULT_BOOSTS,
    FIELDS,
    BM25Strategy,
    LexicalStrategy,
    Scorer,
    SearchDoc,
    SearchStrategy,
    ToolIndex,
    tokenize,
)
from aperture.discovery.strategy import Scores
from bench._catalogs import synthetic_queries, synthetic_tools
from bench._processes import percentile, write_results

console = Console()


def measure(strategy: SearchStrategy, size: int, queries: int, progress: Progress) -> dict[str, Any]:
    tools = synthetic_tools(size)
    asked = synthetic_queries(tools, queries)
    index = ToolIndex(strategy)
    started = time.perf_counter()
    index.update(tools)
    build_s = time.perf_counter() - started
    task = progress.add_task(f"{strategy.name} {size:>7,} tools", total=len(asked))
    for query in asked[:20]:  # warm-up: caches, numpy
        index.search(query, limit=10)
    latencies = []
    for query in asked:
        t0 = time.perf_counter()
        index.search(query, limit=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        progress.advance(task)
    return {
        "strategy": strategy.name,
        "tools": size,
        "queries": len(asked),
        "build_s": round(build_s, 3),
        "build_tools_per_s": round(size / build_s),
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


class Bm25sReference:
    """The same five fields and boosts scored with the `bm25s` package: the reference this index is built against."""

    name = "bm25s (reference)"

    def build(self, docs: Sequence[SearchDoc]) -> Scorer:
        import bm25s

        fields = []
        for field in FIELDS:
            corpus = [d.fields[field] for d in docs]
            if any(corpus):
                model = bm25s.BM25(k1=1.2, b=0.75)
                model.index(corpus, show_progress=False)
                fields.append((DEFAULT_BOOSTS[field], model))

        class _Scorer:
            def scores(self, query: str) -> Scores:
                total = np.zeros(len(docs), dtype=np.float32)
                tokens = tokenize(query)
                for boost, model in fields:
                    ids = [model.vocab_dict[t] for t in tokens if t in model.vocab_dict]
                    if ids:
                        total += boost * model.get_scores_from_ids(ids)
                return total

        return _Scorer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated catalog sizes")
    parser.add_argument("--queries", type=int, default=500, help="queries per catalog")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with Progress(console=console, transient=True) as progress:
        for size in sizes:
            for strategy in (BM25Strategy(), LexicalStrategy(), Bm25sReference()):
                rows.append(measure(strategy, size, args.queries, progress))
    table = Table(title="Search latency (in process, limit 10)")
    for column in ("strategy", "tools", "build s", "build tools/s", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["strategy"], f"{r['tools']:,}", f"{r['build_s']:.2f}", f"{r['build_tools_per_s']:,}",
            f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['mean_ms']:.3f}",
        )  # fmt: skip
    console.print(table)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    console.print(f"wrote {write_results('search_latency', {'meta': meta, 'rows': rows})}")


if __name__ == "__main__":
    main()
