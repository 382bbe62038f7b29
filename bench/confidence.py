"""Calibrating `none` on every development set: candidate evidence values, each judged on held-out halves.

The confidence label must hold on every set, so a candidate's threshold is fitted the way the defaults are: on a
seeded half of each set's requests (all answerable: MetaTool single, BFCL pooled, Seal-Tools, RestBench, Gorilla,
and BFCL's answerable abstention entries), at the lowest of the sets' 9th percentiles, and measured on the other
halves, with BFCL's irrelevant entries (`irrelevance`, `live_irrelevance`, each searched in a catalog of its own
functions) as the requests that should hear `none`. Repeated over seeds; reports per candidate the share of
irrelevant entries under the threshold, the share of requests of one set asked in another's catalog (`CROSSED`:
unanswerable requests in catalogs of 94-1,046 tools, where BFCL's are of one to a few functions), the worst
answerable set's mean share and the worst single seed, and the held-out AUROC on BFCL.

The first five hits' evidence parts (cosine, query share, name share, description share) are written once to
bench/results/confidence/HITS.jsonl (`--reuse` reads them back), from 1,000-request samples of each set (the
seed `bench.retrieval --limit 1000` uses; RestBench whole) and every abstention entry.

    .venv/bin/python -m bench.confidence [--strategy hybrid|bm25] [--seeds 8] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from aperture.discovery import BM25Strategy, HybridStrategy, SearchDoc, SearchStrategy, ToolIndex, tokenize
from aperture.discovery.confidence import PAGE_HITS, Overlap
from aperture.discovery.evaluation import _tool, load_queries, load_tools
from aperture.discovery.index import _dense_part
from aperture.model import Tool
from bench._catalogs import missing_data
from bench._processes import RESULTS
from bench.retrieval import CONVERTERS, JUDGED_SETS, abstention, auroc

console = Console(width=None if sys.stdout.isatty() else 140)
SAMPLE = 1000
PERCENTILE = 9
IRRELEVANT = "bfcl-irrelevant"
# Requests that should hear `none` in a large catalog too: one set's requests in another's catalog, pairs
# whose domains barely meet (REST APIs of films and music, machine-learning models, ChatGPT plugins). A few
# may be served all the same (a film request by a plugin), the same for every candidate.
CROSS = "cross: "
CROSSED = (
    ("restbench", "gorilla-apibench"),
    ("gorilla-apibench", "restbench"),
    ("metatool-single", "restbench"),
    ("restbench", "metatool-single"),
    ("gorilla-apibench", "metatool-single"),
    ("metatool-single", "gorilla-apibench"),
)
CROSS_REQUESTS = 400

Hit = dict[str, float]  # cos, q, n, d
Request = dict[str, Any]  # set, half (filled per seed), hits
Evidence = Callable[[Sequence[Hit]], float]
Fitted = npt.NDArray[np.bool_]
Candidate = Callable[[Sequence[Request], Fitted], Evidence]  # fitted on the requests marked True


def _hits(index: ToolIndex, query: str) -> list[Hit]:
    """The evidence parts of the first hits of one search (what `ToolIndex._confidence` reads)."""
    page = index.search(query or " ", limit=PAGE_HITS)
    snap = index._snapshot
    dense = _dense_part(snap.scorer)
    where = _positions(snap.docs)
    tokens = tokenize(query)
    out = []
    for hit in page.hits:
        i = where[hit.id]
        overlap = Overlap.of(tokens, snap.docs[i])
        cosine = dense.cosine(query, i) if dense is not None else 0.0
        out.append({"cos": cosine, "q": overlap.query, "n": overlap.name, "d": overlap.described})
    return out


_LAST: list[tuple[object, dict[str, int]]] = []


def _positions(docs: Sequence[SearchDoc]) -> dict[str, int]:
    """Tool key -> position, for the catalog searched last (kept with it, so a new catalog is never confused)."""
    if not _LAST or _LAST[0][0] is not docs:
        _LAST[:] = [(docs, {doc.tool.key: i for i, doc in enumerate(docs)})]
    return _LAST[0][1]


def collect(strategy: Callable[[], SearchStrategy], out: Path) -> list[Request]:
    """Every request's first hits: the judged sets' samples, BFCL's abstention entries, and requests of one set
    in another's catalog (`CROSSED`)."""
    requests: list[Request] = []
    catalogs: dict[str, list[Tool]] = {}
    asked: dict[str, list[str]] = {}
    for name in JUDGED_SETS:
        dataset = CONVERTERS[name](out, None if name == "restbench" else SAMPLE)
        tools = catalogs[name] = load_tools(dataset.tools)
        index = ToolIndex(strategy())
        index.update(tools)
        asked[name] = [query.query for query in load_queries(dataset.queries, tools)]
        requests += [{"set": name, "hits": _hits(index, query)} for query in asked[name]]
        console.print(f"{name}: {len(asked[name])} requests")
    dataset = abstention(out, None)
    for line in dataset.queries.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        index = ToolIndex(strategy())
        index.update(_tool(dataset.tools, i, record) for i, record in enumerate(entry["tools"], 1))
        name = "bfcl-answerable" if entry["answerable"] else IRRELEVANT
        requests.append({"set": name, "hits": _hits(index, entry["query"])})
    console.print(f"abstention: {sum(r['set'] in ('bfcl-answerable', IRRELEVANT) for r in requests)} entries")
    for asking, answering in CROSSED:
        index = ToolIndex(strategy())
        index.update(catalogs[answering])
        name = f"{CROSS}{asking} -> {answering}"
        requests += [{"set": name, "hits": _hits(index, query)} for query in asked[asking][:CROSS_REQUESTS]]
    console.print(f"crossed: {len(CROSSED)} pairs of {CROSS_REQUESTS} requests")
    return requests


def _dense(hit: Hit) -> float:
    return hit["cos"] + 0.2 * hit["n"] + 0.9 * hit["d"]


def _lexical(hit: Hit) -> float:
    return hit["q"] + hit["n"] + hit["d"]


def candidates(dense: bool) -> dict[str, Candidate]:
    """The evidence values compared: the top hit's (before), the best single hit's, and each part at its best
    over the first five (kept)."""
    one = _dense if dense else _lexical

    def best_of(k: int) -> Evidence:
        return lambda hits: max((one(h) for h in hits[:k]), default=-1.0)

    def parts(hits: Sequence[Hit]) -> float:
        if not hits:
            return -1.0
        best = {key: max(h[key] for h in hits) for key in ("cos", "q", "n", "d")}
        return one(best)

    def fixed(evidence: Evidence) -> Candidate:
        return lambda requests, fitted: evidence

    parts_of = ["cos", "n", "d"] if dense else ["q", "n", "d"]
    compared = {
        "top hit (before)": fixed(best_of(1)),
        "best of 3 hits": fixed(best_of(3)),
        "best of 5 hits": fixed(best_of(5)),
        "parts of 5 (kept)": fixed(parts),
        "logistic, page parts": logistic(parts_of),
    }
    if dense:
        compared["logistic, page parts + query share"] = logistic([*parts_of, "q"])
    return compared


def _page_parts(hits: Sequence[Hit], keys: Sequence[str]) -> list[float]:
    return [max((h[key] for h in hits), default=0.0) for key in keys]


def logistic(keys: Sequence[str]) -> Candidate:
    """A candidate fitted per seed: a logistic model of the page's parts `keys` on the fitted halves, each
    answerable set weighing as much as the others together weigh against BFCL's irrelevant entries / 6."""

    def fit(requests: Sequence[Request], fitted: Fitted) -> Evidence:
        chosen = [
            r for r, f in zip(requests, fitted, strict=True) if f and r["hits"] and not r["set"].startswith(CROSS)
        ]
        x = np.array([[*_page_parts(r["hits"], keys), 1.0] for r in chosen])
        y = np.array([0.0 if r["set"] == IRRELEVANT else 1.0 for r in chosen])
        counts = {name: sum(r["set"] == name for r in chosen) for name in {r["set"] for r in chosen}}
        groups = len(counts) - 1
        w = np.array([(1.0 if r["set"] == IRRELEVANT else 1.0 / groups) / counts[r["set"]] for r in chosen]) * 1000
        b = np.zeros(x.shape[1])
        ridge = np.diag([1e-2] * len(keys) + [0.0])
        for _ in range(60):  # Newton's method
            p = 1 / (1 + np.exp(-x @ b))
            gradient = x.T @ (w * (p - y)) + ridge @ b
            hessian = (x * (w * p * (1 - p))[:, None]).T @ x + ridge
            b -= np.linalg.solve(hessian, gradient)
        return lambda hits: float(np.dot([*_page_parts(hits, keys), 1.0], b)) if hits else -99.0

    return fit


def judge(requests: Sequence[Request], candidate: Candidate, seeds: int) -> dict[str, Any]:
    """Threshold (and a logistic candidate's weights) on each seed's fitted halves, rates and AUROC on its
    held-out halves."""
    sets = sorted({r["set"] for r in requests})
    member = {name: np.array([r["set"] == name for r in requests]) for name in sets}
    answerable = [name for name in sets if name != IRRELEVANT and not name.startswith(CROSS)]
    crossed = [name for name in sets if name.startswith(CROSS)]
    shares: dict[str, list[float]] = {name: [] for name in sets}
    areas = []
    for seed in range(seeds):
        draw = random.Random(seed)
        fitted = np.array([draw.random() < 0.5 for _ in requests])
        evidence = candidate(requests, fitted)
        values = np.array([evidence(r["hits"]) for r in requests])
        threshold = min(np.percentile(values[member[n] & fitted], PERCENTILE) for n in answerable)
        for name in sets:
            held = values[member[name] & ~fitted]
            shares[name].append(float((held < threshold).mean()))
        positive = values[member["bfcl-answerable"] & ~fitted]
        negative = values[member[IRRELEVANT] & ~fitted]
        areas.append(auroc(positive.tolist(), negative.tolist()))
    means = {name: float(np.mean(shares[name])) for name in answerable}
    worst = max(means, key=lambda name: means[name])
    worst_seed = max(((name, s) for name in answerable for s in shares[name]), key=lambda pair: pair[1])
    return {
        "none_irrelevant": float(np.mean(shares[IRRELEVANT])),
        "worst_set": worst,
        "worst_set_mean": means[worst],
        "worst_seed_set": worst_seed[0],
        "worst_seed": worst_seed[1],
        "auroc": float(np.mean(areas)),
        "none_crossed": float(np.mean([np.mean(shares[name]) for name in crossed])) if crossed else math.nan,
        "none_by_set": {name: round(float(np.mean(v)), 4) for name, v in shares.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategy", choices=("hybrid", "bm25"), default="hybrid")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--reuse", action="store_true", help="read the hits written by an earlier run")
    args = parser.parse_args(argv)
    if (why := missing_data("bench.confidence")) is not None:
        raise SystemExit(why)
    folder = RESULTS / "confidence"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"HITS-{args.strategy}.jsonl"
    if args.reuse and path.exists():
        requests = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        shared: SearchStrategy | None = HybridStrategy() if args.strategy == "hybrid" else None
        requests = collect(lambda: shared or BM25Strategy(), RESULTS)
        path.write_text("".join(json.dumps(r) + "\n" for r in requests), encoding="utf-8")
    table = Table(title=f"none on held-out halves ({args.strategy}, {args.seeds} seeds)")
    headers = ("evidence", "none | irrelevant", "none | crossed", "worst set (mean)", "worst seed", "AUROC")
    for header in headers:
        table.add_column(header)
    report = {}
    for name, candidate in candidates(args.strategy == "hybrid").items():
        row = report[name] = judge(requests, candidate, args.seeds)
        table.add_row(
            name,
            f"{row['none_irrelevant']:.3f}",
            f"{row['none_crossed']:.3f}",
            f"{row['worst_set_mean']:.3f} ({row['worst_set']})",
            f"{row['worst_seed']:.3f} ({row['worst_seed_set']})",
            f"{row['auroc']:.3f}",
        )
    console.print(table)
    (folder / f"calibration-{args.strategy}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
