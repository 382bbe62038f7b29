"""Figures across the retrieval sets: per-query metrics, seeded bootstrap intervals, ratios to plain BM25 and
their geometric mean.

A change to search is judged on every development set together: each set's R@5, nDCG@5 and Comp@10 as a
ratio to plain `bm25s` measured in the same run, the geometric mean of those ratios over the sets (so no
two sets can carry the others, as with an arithmetic mean), and per set a 95% interval from a seeded
bootstrap over its queries, which says how far a figure moves by the draw of queries alone (the noise a
change must beat before it counts as a gain or a loss on that set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from aperture.discovery.evaluation import Ranking, complete_at, ndcg_at, recall_at

# (label, key in a row's `metrics`, per-query function) of the figures judged.
JUDGED: tuple[tuple[str, str, Callable[[Ranking], float]], ...] = (
    ("R@5", "recall@5", lambda r: recall_at(r, 5)),
    ("nDCG@5", "ndcg@5", lambda r: ndcg_at(r, 5)),
    ("Comp@10", "completeness@10", lambda r: complete_at(r, 10)),
)
RESAMPLES = 1000
SEED = 0

Floats = npt.NDArray[np.float64]


def per_query(rankings: Sequence[Ranking]) -> dict[str, Floats]:
    """Each judged figure per query, in query order."""
    return {label: np.array([f(r) for r in rankings], dtype=np.float64) for label, _, f in JUDGED}


def confidence_shares(rankings: Sequence[Ranking]) -> dict[str, float]:
    """How often each confidence label was said, over the queries (all answerable in these sets)."""
    said = [r.confidence for r in rankings if r.confidence]
    if not said:
        return {}
    return {level: said.count(level) / len(said) for level in ("strong", "weak", "none")}


def _draws(size: int, resamples: int = RESAMPLES, seed: int = SEED) -> npt.NDArray[np.int64]:
    """`resamples` bootstrap draws of `size` query positions, the same for a given size and seed."""
    return np.random.default_rng(seed).integers(0, size, size=(resamples, size))


def interval(values: Floats) -> tuple[float, float]:
    """The seeded bootstrap 95% interval of the mean of `values` (percentile method)."""
    if values.size == 0:
        return (math.nan, math.nan)
    means = values[_draws(values.size)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def ratio_interval(values: Floats, baseline: Floats) -> tuple[float, float]:
    """The seeded bootstrap 95% interval of mean(values) / mean(baseline), the queries drawn in pairs."""
    if values.size == 0 or values.size != baseline.size:
        return (math.nan, math.nan)
    draws = _draws(values.size)
    ours, theirs = values[draws].mean(axis=1), baseline[draws].mean(axis=1)
    ratios = ours[theirs > 0] / theirs[theirs > 0]
    if ratios.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return (float(low), float(high))


def compare(rows: list[dict[str, Any]], per: Mapping[str, dict[str, Floats]], plain: str) -> None:
    """Add to each row its bootstrap intervals, and (except plain BM25's own row) its ratios to plain BM25."""
    base = per.get(plain)
    base_row = next((row for row in rows if row["strategy"] == plain), None)
    for row in rows:
        values = per[row["strategy"]]
        row["interval95"] = {label: [round(x, 4) for x in interval(values[label])] for label, _, _ in JUDGED}
        if base is None or base_row is None or row["strategy"] == plain:
            continue
        ratios, bands = {}, {}
        for label, key, _ in JUDGED:
            theirs = base_row["metrics"][key]
            ratios[label] = round(row["metrics"][key] / theirs, 4) if theirs else math.nan
            bands[label] = [round(x, 4) for x in ratio_interval(values[label], base[label])]
        row["ratio_to_plain"] = ratios
        row["ratio_interval95"] = bands


def geometric_means(datasets: Mapping[str, Mapping[str, Any]], sets: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per strategy and judged figure, the geometric mean over `sets` of the ratios to plain BM25 (only the
    strategies measured on every one of those sets)."""
    chosen = [datasets[name] for name in sets if name in datasets and datasets[name]["measure"] == "retrieval"]
    if not chosen:
        return {}
    out: dict[str, dict[str, float]] = {}
    names = [row["strategy"] for row in chosen[0]["rows"] if "ratio_to_plain" in row]
    for name in names:
        rows = [next((r for r in d["rows"] if r["strategy"] == name), None) for d in chosen]
        if any(r is None for r in rows):
            continue
        out[name] = {label: _geomean([r["ratio_to_plain"][label] for r in rows if r]) for label, _, _ in JUDGED}
    return out


def _geomean(values: Sequence[float]) -> float:
    if not values or any(not v > 0 for v in values):
        return math.nan
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 4)
