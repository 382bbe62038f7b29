"""`aperture eval retrieval`, run in process with typer's runner on small JSON-lines files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aperture.cli import app
from aperture.discovery import default_strategy

runner = CliRunner()

TOOLS = [
    {"id": "gh:create_issue", "description": "Create an issue in a GitHub repository."},
    {"id": "slack:send_message", "description": "Send a message to a Slack channel."},
    {"name": "get_weather", "description": "Current weather for a city."},
]
QUERIES = [
    {"query": "create issue", "gold": ["gh:create_issue"]},
    {"query": "send a slack message", "gold": ["slack:send_message"]},
    {"query": "umbrella tomorrow?", "gold": ["get_weather"]},
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    tools, queries = tmp_path / "tools.jsonl", tmp_path / "queries.jsonl"
    tools.write_text("".join(json.dumps(t) + "\n" for t in TOOLS))
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    return tools, queries


def invoke(tools: Path, queries: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["eval", "retrieval", "--tools", str(tools), "--queries", str(queries), *extra])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_help_explains_the_files_and_metrics() -> None:
    result = runner.invoke(app, ["eval", "retrieval", "--help"])
    assert result.exit_code == 0
    for text in ("--tools", "--queries", "--strategy", "--json", "gold", "R@k", "Comp@k"):
        assert text in result.output
    assert "eval" in runner.invoke(app, ["--help"]).output


def test_prints_a_table_of_metrics_and_latency(files: tuple[Path, Path]) -> None:
    code, output = invoke(*files, "--misses", "5", "--strategy", "bm25")
    assert code == 0
    for label in ("R@1", "R@5", "R@10", "nDCG@5", "nDCG@10", "Comp@5", "Comp@10", "p50", "p99"):
        assert label in output
    assert "3 tools, 3 queries, strategy bm25" in output
    assert "line 3: umbrella tomorrow?" in output  # no word in common with the weather tool


def test_the_default_strategy_is_the_gateways(files: tuple[Path, Path]) -> None:
    code, output = invoke(*files, "--json")
    assert code == 0 and json.loads(output)["strategy"] == default_strategy().name


def test_json_prints_one_object(files: tuple[Path, Path]) -> None:
    code, output = invoke(*files, "--json", "--strategy", "lexical")
    assert code == 0
    data = json.loads(output)  # JSON survives the whitespace squeeze
    assert {"metrics", "latency_ms", "strategy", "tools", "queries"} <= set(data)
    assert data["strategy"] == "lexical" and data["tools"] == 3 and data["queries"] == 3
    assert set(data["metrics"]) == {
        "recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "completeness@5", "completeness@10",
    }  # fmt: skip
    assert data["metrics"]["recall@1"] == pytest.approx(2 / 3, abs=1e-3)
    assert set(data["latency_ms"]) == {"p50", "p99"}


def test_many_queries_run_under_a_progress_bar(files: tuple[Path, Path]) -> None:
    tools, queries = files
    queries.write_text("".join(json.dumps(QUERIES[i % 3]) + "\n" for i in range(300)))
    code, output = invoke(tools, queries, "--json")
    assert code == 0 and json.loads(output)["queries"] == 300


def test_a_bad_file_exits_2_naming_the_line(files: tuple[Path, Path]) -> None:
    tools, queries = files
    queries.write_text(json.dumps(QUERIES[0]) + "\n{oops\n")
    code, output = invoke(tools, queries)
    assert code == 2
    assert "queries.jsonl:2" in output and "not valid JSON" in output
    assert "Traceback" not in output


def test_unknown_gold_missing_file_and_unknown_strategy_exit_2(files: tuple[Path, Path], tmp_path: Path) -> None:
    tools, queries = files
    queries.write_text(json.dumps({"query": "x", "gold": ["gh:create_isue"]}) + "\n")
    code, output = invoke(tools, queries)
    assert code == 2 and "did you mean gh:create_issue" in output
    code, output = invoke(tmp_path / "missing.jsonl", queries)
    assert code == 2 and "file not found" in output
    code, output = invoke(*files, "--strategy", "telepathy")
    assert code == 2 and "unknown search strategy 'telepathy'" in output


def test_the_catalog_that_aperture_tools_prints_can_be_measured(tmp_path: Path) -> None:
    listing = runner.invoke(app, ["tools", "--json", "--config", "examples/aperture.yaml"])
    assert listing.exit_code == 0
    tools = tmp_path / "tools.json"
    tools.write_text(listing.output)
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "convert kilometres to miles", "gold": ["toolbox:convert_units"]}) + "\n")
    result = runner.invoke(app, ["eval", "retrieval", "--tools", str(tools), "--queries", str(queries), "--json"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # every field it prints is read or known
    assert json.loads(result.output)["metrics"]["recall@1"] == 1.0
    # The full descriptions and schemas come back, not only the first sentence that search shows.
    calculate = next(t for t in json.loads(listing.output) if t["id"] == "toolbox:calculate")
    assert (
        len(calculate["description"]) > len(calculate["short_description"]) and calculate["input_schema"]["properties"]
    )


def test_a_field_of_the_users_own_is_a_warning_not_an_error(files: tuple[Path, Path]) -> None:
    tools, queries = files
    tools.write_text("".join(json.dumps({**t, "category": "misc"}) + "\n" for t in TOOLS))
    code, output = invoke(tools, queries)
    assert code == 0
    assert output.count("warning:") == 1 and "ignored field(s) category (3 of them, first at line 1)" in output
