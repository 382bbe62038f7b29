"""Retrieval quality of every search strategy next to plain BM25, on public tool-retrieval data sets.

Converts ../shared/benchmarks to the files `aperture eval retrieval` reads (TOOLS.jsonl and QUERIES.jsonl,
under bench/results/retrieval/<dataset>/, not committed), loads them back through the same loader and ranks every query
through `ToolIndex`, so what is measured is what the command and the gateway serve:

- metatool-single: MetaTool's 20,614 single-tool queries (all_clean_data.csv) over its 199 tools.
- metatool-multi: MetaTool's 497 two-tool queries (multi_tool_query_golden.json) over the same tools.
- bfcl-pooled: every function of BFCL's simple_python, multiple, parallel_multiple, live_simple and
  live_multiple in one catalog (deduplicated by name, first definition kept); query = the user turns
  joined; gold = the functions the answer calls. Names keep their dots (`math.factorial` becomes
  `bfcl:math.factorial`); characters a tool id cannot hold become `_`, in tools and gold alike.

- seal-tools, restbench, gorilla-apibench: ../shared/benchmarks/<set>/tools.jsonl and queries.jsonl, already in
  the `eval retrieval` format (their SOURCE.md files say how they were converted), copied (or sampled).

The five development sets every change is judged on together are metatool-single, bfcl-pooled, seal-tools,
restbench and gorilla-apibench (`JUDGED_SETS`): each strategy's R@5, nDCG@5 and Comp@10 as a ratio to plain
BM25 in the same run, with a seeded bootstrap 95% interval per set, and the geometric mean of the ratios over
the five (printed last, and under "geometric_mean" in retrieval.json). metatool-multi is reported beside them.

- abstention: BFCL entries, each searched in a catalog of its own functions: the answerable categories
  (simple_python, multiple, live_simple, live_multiple) against irrelevance and live_irrelevance. Reports the
  AUROC of the calibrated evidence (`SearchPage.evidence`) and how often the default thresholds answer
  `none` on irrelevant and on answerable entries (writes bench/results/retrieval/abstention/ENTRIES.jsonl).

"bm25s (plain)" is the usual baseline: the `bm25s` package over name + description + parameter names
(identifiers split into words), English stop words and Snowball stemmer (PyStemmer). Prints one table per data set and
writes bench/results/retrieval.json.

    .venv/bin/python -m bench.retrieval [--datasets metatool-single,bfcl-pooled] [--strategies bm25,lexical]
                                        [--limit 500]
    .venv/bin/python -m bench.retrieval --datasets abstention --strategies hybrid,bm25
    .venv/bin/python -m bench.retrieval --strategies hybrid,bm25 --limit 400   # every set, quick (~400 queries each)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from aperture import discovery
from aperture.discovery import Scorer, SearchDoc, SearchStrategy
from aperture.discovery.evaluation import evaluate, load_queries, load_tools
from aperture.discovery.strategy import Scores
from aperture.model import ApertureError
from bench._catalogs import SHARED, json_schema, missing_data
from bench._processes import RESULTS
from bench._retrieval_stats import JUDGED, compare, confidence_shares, geometric_means, per_query

# Wide enough for the tables when piped to a file (rich assumes 80 columns then).
console = Console(width=None if sys.stdout.isatty() else 120)

METATOOL = SHARED / "metatool"
BFCL = SHARED / "bfcl"
# The sets of ../shared/benchmarks that come in the `eval retrieval` format already: data set -> folder.
SHARED_SETS = {"seal-tools": "seal_tools", "restbench": "restbench", "gorilla-apibench": "gorilla_apibench"}
# The development sets a change is judged on together (geometric mean of the ratios to plain BM25).
JUDGED_SETS = ("metatool-single", "bfcl-pooled", "seal-tools", "restbench", "gorilla-apibench")
BFCL_POOLED = ["simple_python", "multiple", "parallel_multiple", "live_simple", "live_multiple"]
# Strategies tried in this order; those the install lacks (no semantic extra, say) are skipped with a note.
CANDIDATE_STRATEGIES = ("bm25", "lexical", "semantic", "hybrid")
PLAIN = "bm25s (plain)"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_CAMEL_OR_SNAKE = re.compile(r"(?<=[a-z])(?=[A-Z])|_")

Record = dict[str, Any]


# --- conversion to TOOLS.jsonl / QUERIES.jsonl --------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A converted data set: where its files are and which measurement it feeds."""

    name: str
    tools: Path
    queries: Path
    measure: str = "retrieval"


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:128]


def _subsample(items: list[Record], limit: int | None, seed: int = 0) -> list[Record]:
    """`limit` items chosen at random but reproducibly, kept in their original order."""
    if limit is None or limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _write(
    out: Path, name: str, tools: Sequence[Record], queries: Sequence[Record], measure: str = "retrieval"
) -> Dataset:
    folder = out / "retrieval" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "TOOLS.jsonl", folder / "QUERIES.jsonl"
    for path, records in zip(paths, (tools, queries), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return Dataset(name=name, tools=paths[0], queries=paths[1], measure=measure)


def _metatool_tools() -> list[Record]:
    described = json.loads((METATOOL / "plugin_des.json").read_text(encoding="utf-8"))
    return [{"id": f"metatool:{_safe(name)}", "description": text} for name, text in described.items()]


def metatool_single(out: Path, limit: int | None) -> Dataset:
    with (METATOOL / "all_clean_data.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    queries = [{"query": row["Query"], "gold": [f"metatool:{_safe(row['Tool'])}"]} for row in rows]
    return _write(out, "metatool-single", _metatool_tools(), _subsample(queries, limit))


def metatool_multi(out: Path, limit: int | None) -> Dataset:
    data = json.loads((METATOOL / "multi_tool_query_golden.json").read_text(encoding="utf-8"))
    queries = [{"query": item["query"], "gold": [f"metatool:{_safe(t)}" for t in item["tool"]]} for item in data]
    return _write(out, "metatool-multi", _metatool_tools(), _subsample(queries, limit))


def _bfcl_lines(category: str, answers: bool = False) -> Iterator[Record]:
    path = BFCL / "possible_answer" / f"BFCL_v4_{category}.json" if answers else BFCL / f"BFCL_v4_{category}.json"
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            yield json.loads(raw)


def bfcl_pooled(out: Path, limit: int | None) -> Dataset:
    tools: dict[str, Record] = {}
    queries: list[Record] = []
    for category in BFCL_POOLED:
        gold_of = {a["id"]: [next(iter(call)) for call in a["ground_truth"]] for a in _bfcl_lines(category, True)}
        for entry in _bfcl_lines(category):
            for fn in entry["function"]:
                tools.setdefault(_safe(fn["name"]), _bfcl_tool(fn))
            gold = gold_of.get(entry["id"])
            if not gold:
                continue
            turns = [t["content"] for turns in entry["question"] for t in turns if t["role"] == "user"]
            queries.append({"query": " ".join(turns), "gold": list(dict.fromkeys(f"bfcl:{_safe(g)}" for g in gold))})
    return _write(out, "bfcl-pooled", list(tools.values()), _subsample(queries, limit))


def _bfcl_tool(fn: Record) -> Record:
    """One BFCL function as a TOOLS.jsonl record."""
    return {
        "id": f"bfcl:{_safe(fn['name'])}",
        "description": fn.get("description", ""),
        "input_schema": json_schema(fn.get("parameters") or {"type": "object", "properties": {}}),
    }


ANSWERABLE = ["simple_python", "multiple", "live_simple", "live_multiple"]
IRRELEVANT = ["irrelevance", "live_irrelevance"]


def abstention(out: Path, limit: int | None) -> Dataset:
    """BFCL entries with their own functions as the catalog, labelled answerable or not (one JSON line each)."""
    entries: list[Record] = []
    for category in ANSWERABLE + IRRELEVANT:
        for entry in _bfcl_lines(category):
            tools: dict[str, Record] = {}
            for fn in entry["function"]:
                tools.setdefault(_safe(fn["name"]), _bfcl_tool(fn))
            turns = [t["content"] for turns in entry["question"] for t in turns if t["role"] == "user"]
            entries.append(
                {
                    "category": category,
                    "answerable": category in ANSWERABLE,
                    "query": " ".join(turns),
                    "tools": list(tools.values()),
                }
            )
    folder = out / "retrieval" / "abstention"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ENTRIES.jsonl"
    chosen = _subsample(entries, limit)
    path.write_text("".join(json.dumps(e) + "\n" for e in chosen), encoding="utf-8")
    return Dataset(name="abstention", tools=path, queries=path, measure="abstention")


def shared_set(name: str, out: Path, limit: int | None) -> Dataset:
    """One of `SHARED_SETS`: its tools as they are, its queries sampled to `limit` (seeded)."""
    folder = SHARED / SHARED_SETS[name]
    tools = [json.loads(line) for line in (folder / "tools.jsonl").read_text(encoding="utf-8").splitlines() if line]
    lines = (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    queries = [json.loads(line) for line in lines if line.strip()]
    return _write(out, name, tools, _subsample(queries, limit))


CONVERTERS: dict[str, Callable[[Path, int | None], Dataset]] = {
    "metatool-single": metatool_single,
    "metatool-multi": metatool_multi,
    "bfcl-pooled": bfcl_pooled,
    **{name: partial(shared_set, name) for name in SHARED_SETS},
    "abstention": abstention,
}


# --- the plain BM25 baseline ---------------------------------------------------------------------------------


def plain_text(doc: SearchDoc) -> str:
    """Name and parameter names (camelCase and snake_case split into words) and the description.

    The text the published baselines index. This reproduces MetaTool's (single-tool R@1 0.387, multi-tool
    Comp@5 0.181 against 0.179); on BFCL pooled it is a little stronger than the published figure (R@5
    0.792 against 0.776; without splitting parameter names, 0.775).
    """
    tool = doc.tool
    params = " ".join(p.name for p in tool.parameters())
    return f"{_words(tool.name)} {tool.description} {_words(params)}"


def _words(identifier: str) -> str:
    return _CAMEL_OR_SNAKE.sub(" ", identifier)


class PlainBM25:
    """`bm25s` with its defaults (k1 1.5, b 0.75), English stop words and stemmer: the baseline to beat."""

    name = PLAIN

    def build(self, docs: Sequence[SearchDoc]) -> Scorer:
        import bm25s

        stemmer = _stemmer()
        tokens = bm25s.tokenize([plain_text(d) for d in docs], stopwords="en", stemmer=stemmer, show_progress=False)
        model = bm25s.BM25()
        model.index(tokens, show_progress=False)
        vocab: dict[str, int] = tokens.vocab
        size = len(docs)

        class _Scorer:
            def scores(self, query: str) -> Scores:
                words = bm25s.tokenize(query, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
                ids = [vocab[w] for w in words[0] if w in vocab]
                if not ids:
                    return np.zeros(size, dtype=np.float32)
                return np.asarray(model.get_scores_from_ids(ids), dtype=np.float32)

        return _Scorer()


def _stemmer() -> Any:
    """PyStemmer's English Snowball stemmer (bm25s calls its `stemWords`), or None when not installed."""
    try:
        import Stemmer
    except ImportError:
        console.print("[yellow]PyStemmer is not installed: plain BM25 runs without stemming[/yellow]")
        return None
    return Stemmer.Stemmer("english")


# --- measurement passes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    """One kind of measurement: how to run a strategy over a data set, and which columns to show."""

    run: Callable[[Dataset, SearchStrategy, Callable[[int], None]], dict[str, Any]]
    count: Callable[[Dataset], int]
    columns: tuple[tuple[str, str], ...]


def _retrieval(dataset: Dataset, strategy: SearchStrategy, started: Callable[[int], None]) -> dict[str, Any]:
    tools = load_tools(dataset.tools)
    queries = load_queries(dataset.queries, tools)
    started(len(queries))
    # The baseline ranks as plain BM25 does, without the index's own additions (prerequisite tools).
    report = evaluate(tools, queries, strategy, on_query=lambda: started(0), prerequisites=strategy.name != PLAIN)
    row = report.to_dict()
    if strategy.name != PLAIN:  # plain BM25 has no confidence of its own
        row["confidence"] = {k: round(v, 4) for k, v in confidence_shares(report.rankings).items()}
    row["_per_query"] = per_query(report.rankings)  # for the intervals and ratios; not written out
    return row


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """The probability that a random positive scores above a random negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    pos, neg = np.asarray(positive, dtype=np.float64), np.sort(np.asarray(negative, dtype=np.float64))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def _abstention(dataset: Dataset, strategy: SearchStrategy, started: Callable[[int], None]) -> dict[str, Any]:
    """Per entry: an index over the entry's own functions, one search, its confidence and evidence."""
    from aperture.discovery import ToolIndex
    from aperture.discovery.evaluation import _tool

    entries = [json.loads(line) for line in dataset.queries.read_text(encoding="utf-8").splitlines() if line]
    started(len(entries))
    values: dict[bool, list[float]] = {True: [], False: []}
    answers: dict[str, dict[str, int]] = {}
    for entry in entries:
        index = ToolIndex(strategy)
        index.update(_tool(dataset.tools, i, record) for i, record in enumerate(entry["tools"], 1))
        page = index.search(entry["query"] or " ", limit=5)
        values[entry["answerable"]].append(page.evidence if page.hits else -1.0)
        counts = answers.setdefault(entry["category"], {"strong": 0, "weak": 0, "none": 0})
        counts[page.confidence.value] += 1
        started(0)

    def share(categories: Sequence[str], level: str) -> float:
        hit = sum(answers.get(c, {}).get(level, 0) for c in categories)
        total = sum(sum(answers.get(c, {}).values()) for c in categories)
        return hit / total if total else float("nan")

    return {
        "strategy": strategy.name,
        "tools": sum(len(e["tools"]) for e in entries),
        "queries": len(entries),
        "auroc": auroc(values[True], values[False]),
        "none_irrelevant": share(IRRELEVANT, "none"),
        "none_answerable": share(ANSWERABLE, "none"),
        "strong_irrelevant": share(IRRELEVANT, "strong"),
        "strong_answerable": share(ANSWERABLE, "strong"),
        "by_category": answers,
        "evidence_quantiles": {
            label: [round(float(q), 3) for q in np.percentile(values[side], [10, 25, 50, 75, 90, 95])]
            for label, side in (("answerable", True), ("irrelevant", False))
            if values[side]
        },
    }


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


MEASURES: dict[str, Measure] = {
    "retrieval": Measure(
        run=_retrieval,
        count=lambda d: _count_lines(d.queries),
        columns=(
            ("R@1", "metrics.recall@1"),
            ("R@5", "metrics.recall@5"),
            ("nDCG@5", "metrics.ndcg@5"),
            ("Comp@5", "metrics.completeness@5"),
            ("Comp@10", "metrics.completeness@10"),
            ("p50 ms", "latency_ms.p50"),
            ("p99 ms", "latency_ms.p99"),
            ("build s", "build_ms"),
        ),
    ),
    "abstention": Measure(
        run=_abstention,
        count=lambda d: _count_lines(d.queries),
        columns=(
            ("AUROC", "auroc"),
            ("none | irrelevant", "none_irrelevant"),
            ("none | answerable", "none_answerable"),
            ("strong | irrelevant", "strong_irrelevant"),
            ("strong | answerable", "strong_answerable"),
        ),
    ),
}


def _field(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value[part]
    return value


def _cell(label: str, value: float) -> str:
    if label == "build s":
        return f"{value / 1000:.2f}"
    return f"{value:.2f}" if label.endswith("ms") else f"{value:.3f}"


# --- the run ---------------------------------------------------------------------------------------------------


def strategies(names: Sequence[str] | None) -> tuple[list[Callable[[], SearchStrategy]], list[str]]:
    """Factories for the strategies to measure (plain BM25 always last), and notes on those left out."""
    factories: list[Callable[[], SearchStrategy]] = []
    notes = []
    for name in names or CANDIDATE_STRATEGIES:
        if name == PLAIN or name == "bm25s":
            continue
        try:
            discovery.strategy_named(name)
        except (ValueError, ImportError, ApertureError) as exc:
            if names:
                raise SystemExit(f"--strategies: {exc}") from None
            notes.append(f"{name}: not available ({exc})")
            continue
        factories.append(partial(discovery.strategy_named, name))
    factories.append(PlainBM25)
    return factories, notes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(CONVERTERS), help="comma-separated: " + ", ".join(CONVERTERS))
    parser.add_argument(
        "--strategies", default=None, help="comma-separated strategy names (default: every one available)"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many queries per data set (seeded)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder: retrieval.json and the converted files in retrieval/"
    )
    args = parser.parse_args(argv)
    if (why := missing_data("bench.retrieval")) is not None:
        raise SystemExit(why)
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in CONVERTERS]
    if unknown:
        raise SystemExit(f"--datasets: unknown {', '.join(unknown)}; choose from {', '.join(CONVERTERS)}")
    names = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
    factories, notes = strategies(names)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")

    results: dict[str, Any] = {}
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        for name in chosen:
            dataset = CONVERTERS[name](args.out, args.limit)
            measure = MEASURES[dataset.measure]
            rows = []
            for factory in factories:
                strategy = factory()
                if dataset.measure == "abstention" and strategy.name == PLAIN:
                    continue  # plain BM25 has no confidence: Aperture's lexical one is the bm25 row
                task = progress.add_task(f"{name} · {strategy.name}", total=measure.count(dataset))

                def advance(total: int, task: Any = task) -> None:
                    if total:
                        progress.update(task, total=total)
                    else:
                        progress.advance(task)

                rows.append(measure.run(dataset, strategy, advance))
                progress.remove_task(task)
            if dataset.measure == "retrieval":
                compare(rows, {row["strategy"]: row.pop("_per_query") for row in rows}, PLAIN)
            results[name] = {"measure": dataset.measure, "files": str(dataset.tools.parent), "rows": rows}
            _print(name, measure, rows)
    means = geometric_means(results, JUDGED_SETS)
    if any(name in results for name in JUDGED_SETS):
        _print_summary(results, means)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "limit": args.limit,
        "judged_sets": [name for name in JUDGED_SETS if name in results],
        "bootstrap": "1000 resamples of the queries, seed 0, percentile 95% interval",
    }
    path = args.out / "retrieval.json"
    document = {"meta": meta, "geometric_mean": means, "datasets": results}
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")


def _print(name: str, measure: Measure, rows: Sequence[dict[str, Any]]) -> None:
    first = rows[0]
    table = Table(title=f"{name}: {first['tools']:,} tools, {first['queries']:,} queries")
    table.add_column("strategy", no_wrap=True)
    for label, _ in measure.columns:
        table.add_column(label, justify="right")
    for row in rows:
        table.add_row(row["strategy"], *(_cell(label, _field(row, key)) for label, key in measure.columns))
    console.print(table)


def _print_summary(results: dict[str, Any], means: dict[str, dict[str, float]]) -> None:
    """One row per judged set and strategy: the figures, their ratio to plain BM25 and the 95% intervals."""
    table = Table(title="x = ratio to plain bm25s (same run); ± = half the 95% bootstrap interval of the figure")
    headers = [c for label, _, _ in JUDGED for c in (label, "x")]
    for header in ("data set", "strategy", *headers, "none", "strong"):
        table.add_column(header, justify="left" if header in ("data set", "strategy") else "right")
    for name in (n for n in (*JUDGED_SETS, "metatool-multi") if n in results):
        if results[name]["measure"] != "retrieval":
            continue
        for row in results[name]["rows"]:
            cells = []
            for label, key, _ in JUDGED:
                low, high = row["interval95"][label]
                cells.append(f"{row['metrics'][key]:.3f} ±{(high - low) / 2:.3f}")
                ratio = row.get("ratio_to_plain", {}).get(label)
                cells.append(f"{ratio:.3f}" if ratio is not None else "")
            said = row.get("confidence", {})
            cells += [f"{said[level]:.3f}" if level in said else "" for level in ("none", "strong")]
            table.add_row(name, row["strategy"], *cells)
    for strategy, figures in means.items():
        table.add_row("geometric mean", strategy, *(c for label, _, _ in JUDGED for c in ("", f"{figures[label]:.3f}")))
    console.print(table)


if __name__ == "__main__":
    main()
