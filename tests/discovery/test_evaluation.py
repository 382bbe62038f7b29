"""Retrieval evaluation: metrics on hand-made rankings with known answers, loaders that name the bad line."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aperture.discovery import BM25Strategy, Scorer, SearchDoc, ToolIndex
from aperture.discovery.evaluation import (
    METRICS,
    EvalDataError,
    EvalQuery,
    Ranking,
    complete_at,
    evaluate,
    latency_summary,
    load_queries,
    load_tools,
    ndcg_at,
    rank,
    recall_at,
    retrieval_metrics,
)
from aperture.discovery.strategy import Scores

TOOLS: list[dict[str, Any]] = [
    {"id": "gh:create_issue", "description": "Create an issue in a GitHub repository.", "tags": ["git"]},
    {"name": "send_message", "namespace": "slack", "description": "Send a message to a Slack channel."},
    {"name": "get_weather", "description": "Current weather for a city."},
    {"id": "fs:read_file", "description": "Read a file from disk.", "inputSchema": {"type": "object"}},
]


def ranking(ids: Sequence[str], gold: Sequence[str], latency_ms: float = 1.0) -> Ranking:
    return Ranking(
        query=EvalQuery(query="q", gold=tuple(gold)),
        ids=tuple(ids),
        scores=tuple(float(len(ids) - i) for i in range(len(ids))),
        latency_ms=latency_ms,
    )


def write(path: Path, records: Sequence[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# --- metrics ----------------------------------------------------------------------------------


def test_one_gold_tool_at_rank_two() -> None:
    r = ranking(["a", "b", "c"], ["b"])
    assert recall_at(r, 1) == 0.0
    assert recall_at(r, 5) == 1.0
    assert ndcg_at(r, 5) == pytest.approx(1 / math.log2(3))
    assert complete_at(r, 1) == 0.0 and complete_at(r, 5) == 1.0


def test_several_gold_tools_count_as_a_share() -> None:
    r = ranking(["a", "x", "c", "y"], ["a", "c", "z"])
    assert recall_at(r, 1) == pytest.approx(1 / 3)
    assert recall_at(r, 5) == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(r, 5) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert complete_at(r, 5) == 0.0


def test_ndcg_is_one_for_a_perfect_ranking_even_with_more_gold_than_k() -> None:
    assert ndcg_at(ranking(["a", "b"], ["a", "b", "c"]), 2) == pytest.approx(1.0)
    assert ndcg_at(ranking(["a", "b", "c"], ["a", "b", "c"]), 5) == pytest.approx(1.0)
    assert ndcg_at(ranking([], ["a"]), 5) == 0.0


def test_metrics_average_over_queries() -> None:
    metrics = retrieval_metrics([ranking(["a"], ["a"]), ranking(["x", "y", "z", "w", "v", "b"], ["b"])])
    assert list(metrics) == list(METRICS)
    assert metrics["recall@1"] == 0.5
    assert metrics["recall@5"] == 0.5
    assert metrics["recall@10"] == 1.0
    assert metrics["completeness@10"] == 1.0
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(7)) / 2)
    assert retrieval_metrics([]) == dict.fromkeys(METRICS, 0.0)


def test_latency_percentiles() -> None:
    summary = latency_summary([ranking(["a"], ["a"], latency_ms=ms) for ms in (1.0, 2.0, 3.0, 4.0)])
    assert summary["p50"] == 2.5
    assert 3.9 < summary["p99"] <= 4.0
    assert latency_summary([]) == {"p50": 0.0, "p99": 0.0}


# --- loading ----------------------------------------------------------------------------------


def test_tools_load_with_ids_derived_from_names(tmp_path: Path) -> None:
    tools = load_tools(write(tmp_path / "tools.jsonl", [TOOLS[0], "", *TOOLS[1:]]))
    assert [t.key for t in tools] == ["gh:create_issue", "slack:send_message", "catalog:get_weather", "fs:read_file"]
    assert tools[0].tags == ("git",)
    assert tools[3].input_schema == {"type": "object"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "a:b", "description": "x"', "not valid JSON"),
        ('["a:b"]', "expected a JSON object, got list"),
        ('{"description": "x"}', "missing 'id' or 'name'"),
        ('{"id": "a:b"}', "missing 'description'"),
        ('{"id": "a:b", "description": 3}', "'description' must be a string, got int 3"),
        ('{"id": "a:b c", "description": "x"}', "Invalid tool id"),
        ('{"id": "a:b", "namespace": "c", "description": "x"}', "disagree"),
        ('{"id": "a:b", "description": "x", "tags": "git"}', "'tags' must be a list of strings"),
        ('{"id": "a:b", "description": "x", "input_schema": []}', "'input_schema' must be a JSON Schema object"),
        (
            '{"id": "a:b", "descripton": "x"}',
            "missing 'description': search needs the tool's description (it has "
            "'descripton': a misspelling of 'description'?)",
        ),
        ('{"id": "gh:create_issue", "description": "again"}', "duplicate tool id 'gh:create_issue' (first on line 1)"),
    ],
)
def test_a_bad_tool_line_is_named_with_its_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path / "tools.jsonl", [TOOLS[0], line])
    with pytest.raises(EvalDataError) as caught:
        load_tools(path)
    assert caught.value.line == 2
    assert caught.value.message.startswith(f"{path}:2: ")
    assert problem in caught.value.message


def test_fields_of_a_catalogs_own_are_ignored_with_one_warning_a_file(tmp_path: Path) -> None:
    records = [{**t, "category": "dev"} for t in TOOLS[:3]] + [{**TOOLS[3], "owner": "me"}]
    warnings: list[str] = []
    tools = load_tools(write(tmp_path / "tools.jsonl", records), warn=warnings.append)
    assert [t.key for t in tools] == ["gh:create_issue", "slack:send_message", "catalog:get_weather", "fs:read_file"]
    assert warnings == [
        f"{tmp_path / 'tools.jsonl'}: ignored field(s) category (3 of them, first at line 1), owner (1 of them, first "
        "at line 4); the fields read are id, name, namespace, description, input_schema, tags, title, "
        "namespace_description, inputSchema, short_description"
    ]
    queries = [{"query": "open an issue", "gold": ["gh:create_issue"], "difficulty": "easy"}]
    warnings.clear()
    assert len(load_queries(write(tmp_path / "queries.jsonl", queries), tools, warn=warnings.append)) == 1
    assert len(warnings) == 1 and "ignored field(s) difficulty (1 of them, first at line 1)" in warnings[0]
    warnings.clear()
    load_tools(write(tmp_path / "plain.jsonl", TOOLS), warn=warnings.append)
    assert warnings == []


def test_a_json_array_of_tools_reads_like_json_lines(tmp_path: Path) -> None:
    """What `aperture tools --json` prints; `search --json`'s short_description stands in for a description."""
    listing = [
        {"id": "gh:create_issue", "name": "create_issue", "namespace": "gh", "description": "Open an issue.",
         "short_description": "Open an issue.", "tags": ["git"], "backend_kind": "mcp", "input_schema": {}},
        {"id": "fs:read_file", "short_description": "Read a file.", "score": 1.5},
    ]  # fmt: skip
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(listing, indent=2))
    warnings: list[str] = []
    tools = load_tools(path, warn=warnings.append)
    assert [(t.key, t.description) for t in tools] == [
        ("gh:create_issue", "Open an issue."),
        ("fs:read_file", "Read a file."),
    ]
    assert warnings == []
    path.write_text(json.dumps([listing[0], ["not", "an", "object"]]))
    with pytest.raises(EvalDataError, match=r"tools.json: item 2: expected a JSON object, got list"):
        load_tools(path)
    path.write_text('[{"id": "a:b", "description": "x"},')
    with pytest.raises(EvalDataError, match=r"tools.json: not valid JSON \(Expecting value at line 1"):
        load_tools(path)


def test_missing_and_empty_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="file not found"):
        load_tools(tmp_path / "nope.jsonl")
    with pytest.raises(EvalDataError, match="no tools"):
        load_tools(write(tmp_path / "empty.jsonl", [""]))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "a:b", "description": "caf\xe9"}\n')
    with pytest.raises(EvalDataError, match="not UTF-8"):
        load_tools(tmp_path / "latin1.jsonl")


def test_queries_resolve_gold_ids_by_key_or_unique_name(tmp_path: Path) -> None:
    tools = load_tools(write(tmp_path / "tools.jsonl", TOOLS))
    queries = load_queries(
        write(
            tmp_path / "queries.jsonl",
            [
                {"query": "file a bug", "gold": ["gh:create_issue"]},
                {"query": "weather", "gold": ["get_weather", "catalog:get_weather"], "intent": "plan a picnic"},
            ],
        ),
        tools,
    )
    assert queries[0] == EvalQuery(query="file a bug", gold=("gh:create_issue",), line=1)
    assert queries[1].gold == ("catalog:get_weather",)  # duplicates collapse
    assert queries[1].intent == "plan a picnic"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"gold": ["gh:create_issue"]}, "missing 'query'"),
        ({"query": "  ", "gold": ["gh:create_issue"]}, "'query' is empty"),
        ({"query": "x"}, "missing 'gold'"),
        ({"query": "x", "gold": "gh:create_issue"}, "'gold' must be a list of tool id strings"),
        ({"query": "x", "gold": []}, "'gold' is empty"),
        ({"query": "x", "gold": ["gh:create_isue"]}, "not in the catalog; did you mean gh:create_issue?"),
        ({"query": "x", "gold": ["read"]}, "'read' is not in the catalog"),
        ({"query": "x", "gold": ["run"]}, "ambiguous: several tools have that name (a:run, b:run)"),
        ({"query": "x", "gold": ["a:run"], "intent": 5}, "'intent' must be a string"),
        (
            {"query": "x", "golden": ["a:run"]},
            "missing 'gold': the list of tool ids that answer the query (it has 'golden': a misspelling of 'gold'?)",
        ),
        ({"quer": "x", "gold": ["a:run"]}, "missing 'query' (it has 'quer': a misspelling of 'query'?)"),
    ],
)
def test_a_bad_query_line_is_named_with_its_problem(tmp_path: Path, record: dict[str, Any], problem: str) -> None:
    extra = [{"id": "a:run", "description": "Run."}, {"id": "b:run", "description": "Run too."}]
    tools = load_tools(write(tmp_path / "tools.jsonl", [*TOOLS, *extra]))
    path = write(tmp_path / "queries.jsonl", [{"query": "ok", "gold": ["gh:create_issue"]}, "", record])
    with pytest.raises(EvalDataError) as caught:
        load_queries(path, tools)
    assert caught.value.message.startswith(f"{path}:3: ")
    assert problem in caught.value.message
    assert caught.value.details == {"file": str(path), "line": 3, "problem": caught.value.problem}


# --- ranking through the index ------------------------------------------------------------------


def test_evaluate_ranks_through_the_index(tmp_path: Path) -> None:
    tools = load_tools(write(tmp_path / "tools.jsonl", TOOLS))
    queries = [
        EvalQuery(query="create issue", gold=("gh:create_issue",)),
        EvalQuery(query="send a slack message and read a file", gold=("slack:send_message", "fs:read_file")),
    ]
    report = evaluate(tools, queries, BM25Strategy())
    assert report.strategy == "bm25" and report.tools == 4 and report.queries == 2
    assert report.rankings[0].ids[0] == "gh:create_issue"
    assert report.metrics["completeness@5"] == 1.0
    assert report.misses(5) == []
    data = report.to_dict()
    assert set(data) == {"metrics", "latency_ms", "build_ms", "strategy", "tools", "queries"}
    assert set(data["latency_ms"]) == {"p50", "p99"}


class _Recording:
    """A strategy that ranks nothing and remembers what it was asked."""

    name = "recording"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def build(self, docs: Sequence[SearchDoc]) -> Scorer:
        asked = self.asked

        class _Scorer:
            def scores(self, query: str) -> Scores:
                import numpy as np

                asked.append(query)
                return np.zeros(len(docs), dtype=np.float32)

        return _Scorer()


def test_rank_times_each_query_and_passes_the_intent(tmp_path: Path) -> None:
    strategy = _Recording()
    index = ToolIndex(strategy)
    index.update(load_tools(write(tmp_path / "tools.jsonl", TOOLS)))
    seen = []
    queries = [EvalQuery(query="weather", gold=("catalog:get_weather",), intent="plan a picnic")]
    rankings = rank(index, queries, on_query=lambda: seen.append(1))
    assert seen == [1]
    assert rankings[0].ids == () and rankings[0].latency_ms >= 0
    assert strategy.asked[0] == "weather"  # the untimed warm-up
    if "intent" not in inspect.signature(ToolIndex.search).parameters:
        assert strategy.asked[-1] == "weather plan a picnic"


def test_a_namespace_description_is_read_indexed_and_pinned(tmp_path: Path) -> None:
    from aperture.execution.integrity import fingerprint

    path = tmp_path / "TOOLS.jsonl"
    records = [
        {"id": "crm:find", "description": "Find records.", "namespace_description": "Salesforce accounts and leads."},
        {"id": "files:find", "description": "Find records."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    crm, files = load_tools(path)
    assert crm.namespace_description == "Salesforce accounts and leads." and files.namespace_description == ""
    index = ToolIndex(BM25Strategy())
    index.update([crm, files])
    assert [hit.id for hit in index.search("find a salesforce lead").hits][:1] == ["crm:find"]
    # Integrity pins it: a changed description is a changed tool; no description keeps earlier fingerprints.
    changed = load_tools(path)[0].__class__(id=crm.id, description=crm.description, namespace_description="Other.")
    assert fingerprint(changed) != fingerprint(crm)
    assert fingerprint(files) == fingerprint(files.__class__(id=files.id, description=files.description))
