"""The retrieval benchmark's converters write files the evaluation loader accepts (needs ../shared/benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
