"""The benchmarks on a checkout without ../shared/benchmarks: a sentence saying what they need, no traceback."""

from __future__ import annotations

from pathlib import Path

import anyio
import bench._catalogs
import bench.retrieval
import bench.tokens
import pytest


@pytest.fixture
def no_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    missing = tmp_path / "shared" / "benchmarks"
    monkeypatch.setattr(bench._catalogs, "SHARED", missing)
    return missing


def test_bench_tokens_measures_the_example_catalog_and_says_what_the_bfcl_row_needs(
    no_shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = anyio.run(bench.tokens.run, 5)
    assert [row["catalog"] for row in rows] == ["example toolbox"]
    said = " ".join(capsys.readouterr().out.split())
    assert f"The BFCL row needs the public tool-retrieval data sets (BFCL, MetaTool, ...) in {no_shared}" in said
    assert "measuring the example toolbox only" in said


def test_bench_retrieval_stops_with_what_it_needs(no_shared: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.retrieval.main(["--limit", "1"])
    assert str(stopped.value).startswith(
        f"bench.retrieval needs the public tool-retrieval data sets (BFCL, MetaTool, ...) in {no_shared}"
    )


def test_a_bfcl_catalog_without_the_data_is_a_sentence_not_a_traceback(no_shared: Path) -> None:
    with pytest.raises(SystemExit, match="BFCL's catalog needs the public tool-retrieval data sets"):
        bench._catalogs.bfcl_tools(limit=10)


def test_bench_confidence_stops_with_what_it_needs(no_shared: Path) -> None:
    import bench.confidence

    with pytest.raises(SystemExit, match=r"bench\.confidence needs the public tool-retrieval data sets"):
        bench.confidence.main(["--reuse"])
