"""Search latency and index build rate on synthetic catalogs of 1k, 10k and 100k tools.

Side by side in one run: Aperture's BM25 (the default), the lexical strategy, and the same fields and
boosts scored by the `bm25s` package as a reference. With `--hybrid`, also the hybrid strategy (query
embedding included) at the sizes up to 10k, on the short queries, on two-part requests ("... and then
..."), whose clauses are scored too, and on task-length requests of about 80 words (five needs in five
sentences: clauses, clause tops and prerequisite tools all at work). Its build includes embedding the
catalog, which the embedding cache makes a one-off (about 2.5 minutes for 10k tools on 2 busy cores). Prints
a table and writes bench/results/search_latency.json.

    .venv/bin/python -m bench.search_latency [--sizes 1000,10000,100000] [--queries 500] [--hybrid]
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
    HybridStrategy,
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


def measure(
    strategy: SearchStrategy,
    size: int,
    queries: int,
    progress: Progress,
    *,
    two_part: bool = False,
    long: bool = False,
) -> dict[str, Any]:
    tools = synthetic_tools(size)
    asked = synthetic_queries(tools, queries)
    if long:
        asked = [_long_request(asked, i) for i in range(len(asked))]
    elif two_part:
        half = len(asked) // 2
        asked = [
            f"Please {a} for the report and then {b} so I can share it"
            for a, b in zip(asked[:half], asked[half:], strict=False)
        ]
    index = ToolIndex(strategy)
    started = time.perf_counter()
    index.update(tools)
    index.wait_ready()
    build_s = time.perf_counter() - started
    label = f"{strategy.name}{' (80 words)' if long else ' (two-part)' if two_part else ''}"
    task = progress.add_task(f"{label} {size:>7,} tools", total=len(asked))
    for query in asked[:20]:  # warm-up: numpy, the model; other strings, so no query vector is cached
        index.search(f"{query} (warm-up)", limit=10)
    latencies = []
    for query in asked:
        t0 = time.perf_counter()
        index.search(query, limit=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        progress.advance(task)
    return {
        "strategy": label,
        "tools": size,
        "queries": len(asked),
        "build_s": round(build_s, 3),
        "build_tools_per_s": round(size / build_s),
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


def _long_request(asked: Sequence[str], i: int) -> str:
    """About 80 words asking for five things in five sentences (the longest requests the budget covers)."""
    a, b, c, d, e = (asked[(i + k * 7) % len(asked)] for k in range(5))
    return (
        f"First, {a} for the quarterly report we are preparing for the board next week. Then {b} and check "
        f"that nothing is missing from the results. After that, {c} so the team can review the numbers "
        f"tomorrow morning. Also {d} for the customers who asked about it last week. Finally, {e} and send "
        "me a short summary of what changed and what still needs attention."
    )


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
    parser.add_argument("--hybrid", action="store_true", help="also the hybrid strategy, at sizes up to 10k")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with Progress(console=console, transient=True) as progress:
        for size in sizes:
            for strategy in (BM25Strategy(), LexicalStrategy(), Bm25sReference()):
                rows.append(measure(strategy, size, args.queries, progress))
            if args.hybrid and size <= 10_000:
                hybrid = HybridStrategy()
                rows.append(measure(hybrid, size, args.queries, progress))
                rows.append(measure(hybrid, size, args.queries, progress, two_part=True))
                rows.append(measure(hybrid, size, args.queries, progress, long=True))
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
