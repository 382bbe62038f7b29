"""The retrieval benchmark's converters write files the evaluation loader accepts (needs ../shared/benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import retrieval
from bench._catalogs import SHARED

from aperture.discovery.evaluation import load_queries, load_tools

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/benchmarks")


@pytest.mark.parametrize("name", list(retrieval.CONVERTERS))
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
