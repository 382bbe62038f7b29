"""The retrieval benchmark's converters write files the evaluation loader accepts (needs ../shared/benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench import _retrieval_stats as stats
from bench import retrieval
from bench._catalogs import SHARED

from aperture.discovery.evaluation import load_queries, load_tools

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/benchmarks")


@pytest.mark.parametrize("name", [n for n in retrieval.CONVERTERS if n != "abstention"])
def test_converters_write_loadable_files(tmp_path: Path, name: str) -> None:
    dataset = retrieval.CONVERTERS[name](tmp_path, 25)
    tools = load_tools(dataset.tools)
    queries = load_queries(dataset.queries, tools)
    assert len(queries) == 25
    assert queries == load_queries(retrieval.CONVERTERS[name](tmp_path, 25).queries, tools)  # same sample
    if name == "bfcl-pooled":
        keys = {t.key for t in tools}
        assert "bfcl:math.factorial" in keys  # dotted names keep their dots
        assert len(keys) == len(tools) > 1000


def test_a_quick_run_reports_each_strategy_and_plain_bm25(tmp_path: Path) -> None:
    retrieval.main(["--datasets", "metatool-multi", "--strategies", "bm25", "--limit", "20", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "retrieval.json").read_text())
    rows = data["datasets"]["metatool-multi"]["rows"]
    assert [r["strategy"] for r in rows] == ["bm25", retrieval.PLAIN]
    assert all(r["queries"] == 20 and 0 <= r["metrics"]["completeness@5"] <= 1 for r in rows)


def test_auroc_counts_pairs_and_ties() -> None:
    assert retrieval.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert retrieval.auroc([0.1], [0.9]) == 0.0
    assert retrieval.auroc([0.5], [0.5]) == 0.5


def test_the_abstention_pass_reports_auroc_and_none_rates(tmp_path: Path) -> None:
    retrieval.main(["--datasets", "abstention", "--strategies", "bm25", "--limit", "60", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "retrieval.json").read_text())
    (row,) = data["datasets"]["abstention"]["rows"]  # plain bm25s has no confidence: no row
    assert row["strategy"] == "bm25" and row["queries"] == 60
    assert 0.5 < row["auroc"] <= 1 and 0 <= row["none_answerable"] < row["none_irrelevant"] <= 1
    assert set(row["by_category"]) <= {*retrieval.ANSWERABLE, *retrieval.IRRELEVANT}


def test_a_run_over_the_judged_sets_reports_ratios_intervals_and_the_geometric_mean(tmp_path: Path) -> None:
    sets = "restbench,gorilla-apibench"
    retrieval.main(["--datasets", sets, "--strategies", "bm25", "--limit", "40", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "retrieval.json").read_text())
    for name in sets.split(","):
        ours, plain = data["datasets"][name]["rows"]
        assert plain["strategy"] == retrieval.PLAIN and "ratio_to_plain" not in plain and "confidence" not in plain
        ratio = ours["ratio_to_plain"]["R@5"]
        assert ratio == pytest.approx(ours["metrics"]["recall@5"] / plain["metrics"]["recall@5"], abs=1e-3)
        low, high = ours["interval95"]["R@5"]
        assert low <= ours["metrics"]["recall@5"] <= high and high - low > 0
        assert sum(ours["confidence"].values()) == pytest.approx(1.0)
    ratios = [data["datasets"][n]["rows"][0]["ratio_to_plain"]["nDCG@5"] for n in sets.split(",")]
    assert data["geometric_mean"]["bm25"]["nDCG@5"] == pytest.approx((ratios[0] * ratios[1]) ** 0.5, abs=1e-3)
    assert data["meta"]["judged_sets"] == sets.split(",")


def test_the_bootstrap_interval_is_seeded_and_narrows_with_more_queries() -> None:
    small = np.array([1.0, 0.0] * 20)
    assert stats.interval(small) == stats.interval(small.copy())  # the same draw every time
    low, high = stats.interval(small)
    wide = high - low
    low, high = stats.interval(np.array([1.0, 0.0] * 2000))
    assert low < 0.5 < high and high - low < wide / 5
    assert stats.ratio_interval(np.ones(30), np.full(30, 0.5)) == (2.0, 2.0)


@pytest.mark.parametrize(("name", "limit"), [("restbench", None), ("metatool-single", 1000)])
def test_hybrid_says_none_to_few_answerable_requests_of_a_development_set(
    tmp_path: Path, name: str, limit: int | None
) -> None:
    from aperture.discovery import strategy_named
    from aperture.discovery.evaluation import evaluate

    dataset = retrieval.CONVERTERS[name](tmp_path, limit)
    tools = load_tools(dataset.tools)
    report = evaluate(tools, load_queries(dataset.queries, tools), strategy_named("hybrid"))
    shares = stats.confidence_shares(report.rankings)
    assert shares["none"] <= 0.12  # calibrated for at most about 10% on every set (was 23-25% on these two)


def test_the_confidence_calibration_fits_on_one_half_and_measures_on_the_other() -> None:
    from bench import confidence

    # Answerable requests whose first hit is weak but whose second fits; irrelevant ones where nothing fits.
    def request(kind: str, first: float, second: float) -> dict[str, object]:
        hits = [{"cos": first, "q": 0.0, "n": 0.0, "d": 0.0}, {"cos": second, "q": 0.0, "n": 0.0, "d": 0.0}]
        return {"set": kind, "hits": hits}

    rng = np.random.default_rng(0)
    requests = [
        request(s, 0.2, 0.6 + 0.1 * rng.random()) for s in ("metatool-single", "bfcl-answerable") for _ in range(50)
    ]
    requests += [request(confidence.IRRELEVANT, 0.2, 0.2 + 0.1 * rng.random()) for _ in range(50)]
    compared = confidence.candidates(dense=True)
    top = confidence.judge(requests, compared["top hit (before)"], seeds=3)
    page = confidence.judge(requests, compared["parts of 5 (kept)"], seeds=3)
    assert top["none_irrelevant"] < 0.2 and page["none_irrelevant"] > 0.8  # only the page tells them apart
    assert page["worst_set_mean"] <= 0.1 and page["auroc"] == 1.0
    fitted = confidence.judge(requests, compared["logistic, page parts"], seeds=3)
    assert fitted["none_irrelevant"] > 0.8
