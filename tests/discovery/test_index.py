"""The tool index: ranking with field boosts, filters, paging and atomic updates."""

from __future__ import annotations

import threading

import pytest

from aperture.discovery import BM25Strategy, LexicalStrategy, SearchStrategy, ToolIndex, split_identifier, tokenize
from aperture.model import Tool, ToolId


def make(
    ns: str, name: str, description: str, tags: tuple[str, ...] = (), params: dict[str, str] | None = None
) -> Tool:
    properties = {p: {"type": "string", "description": d} for p, d in (params or {}).items()}
    return Tool(
        id=ToolId(ns, name),
        description=description,
        tags=tags,
        input_schema={"type": "object", "properties": properties},
    )


CATALOG = [
    make("github", "create_issue", "Open a new issue in a repository.", ("issues",), {"title": "Issue title"}),
    make("github", "listPullRequests", "List pull requests of a repository.", ("pulls",)),
    make("jira", "create-ticket", "Create a ticket describing a problem.", ("issues",)),
    make("weather", "get_forecast", "Forecast for a city for the next days.", ("weather",), {"city": "City name"}),
    make("files", "read_file", "Read the contents of a file from disk.", ("fs",), {"path": "File path"}),
]


def test_identifiers_are_split_and_stemmed() -> None:
    assert split_identifier("listPullRequests") == "list Pull Requests"
    assert split_identifier("getHTTPResponse2") == "get HTTP Response 2"
    assert tokenize("create_issue") == ["creat", "issu"]
    assert tokenize("kebab-case.name") == ["kebab", "case", "name"]
    assert tokenize("How do I create the issues") == ["creat", "issu"]


@pytest.mark.parametrize("strategy", [BM25Strategy(), LexicalStrategy()], ids=["bm25", "lexical"])
def test_ranking_puts_the_best_match_first(strategy: SearchStrategy) -> None:
    index = ToolIndex(strategy)
    index.update(CATALOG)
    assert index.search("create issue").hits[0].id == "github:create_issue"
    assert index.search("pull requests").hits[0].id == "github:listPullRequests"
    assert index.search("weather in a city").hits[0].id == "weather:get_forecast"
    assert index.search("read file contents").hits[0].id == "files:read_file"


def test_name_matches_outrank_description_matches() -> None:
    index = ToolIndex()
    index.update([make("a", "forecast", "Tells things."), make("b", "other", "Gives a forecast of things.")])
    hits = index.search("forecast").hits
    assert [h.id for h in hits] == ["a:forecast", "b:other"]


def test_parameter_text_is_searchable() -> None:
    index = ToolIndex()
    index.update(CATALOG)
    assert index.search("city name").hits[0].id == "weather:get_forecast"


def test_filters_by_namespace_and_tags() -> None:
    index = ToolIndex()
    index.update(CATALOG)
    assert [h.id for h in index.search("create", namespace="jira").hits] == ["jira:create-ticket"]
    assert {h.id for h in index.search("create", tags=["issues"]).hits} == {"github:create_issue", "jira:create-ticket"}
    assert index.search("create", tags=["issues", "pulls"]).hits == []
    page = index.search("create", namespace="nope")
    assert page.hits == [] and "No namespace 'nope'" in page.reason and "github" in page.reason
    assert "tag(s) 'nope'" in index.search("create", tags=["nope"]).reason


def test_empty_catalog_and_no_match_explain_themselves() -> None:
    index = ToolIndex()
    assert "catalog is empty" in index.search("anything").reason
    index.update(CATALOG)
    page = index.search("xylophone")
    assert page.hits == [] and page.total == 0 and "No tool matches" in page.reason


def test_pages_cover_every_match_once() -> None:
    index = ToolIndex()
    index.update([make("ns", f"tool_{i}", f"Does thing number {i} with data.") for i in range(25)])
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = index.search("data thing", limit=7, offset=offset)
        seen += [h.id for h in page.hits]
        offset = page.next_offset
    assert len(seen) == len(set(seen)) == 25


def test_update_reuses_documents_of_unchanged_tools_and_bumps_the_version() -> None:
    index = ToolIndex()
    index.update(CATALOG)
    first_docs = {d.tool.key: d for d in index._snapshot.docs}
    version = index.version
    changed = make("files", "read_file", "Read a file, now with byte ranges.")
    index.update([*CATALOG[:4], changed])
    assert index.version == version + 1
    docs = {d.tool.key: d for d in index._snapshot.docs}
    assert docs["github:create_issue"] is first_docs["github:create_issue"]
    assert docs["files:read_file"] is not first_docs["files:read_file"]
    assert index.get("files:read_file") is changed


def test_searches_during_updates_see_whole_indexes() -> None:
    """A reader never sees half an index: every search sees one of the two catalogs, completely."""
    small = [make("a", f"alpha_{i}", "alpha tool") for i in range(50)]
    large = small + [make("b", f"beta_{i}", "alpha tool too") for i in range(50)]
    index = ToolIndex()
    index.update(small)
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            total = index.search("alpha", limit=100).total
            if total not in (50, 100):
                errors.append(f"saw {total} tools")

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(40):
        index.update(large if i % 2 == 0 else small)
    stop.set()
    thread.join()
    assert errors == []


class CountingBM25(BM25Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.builds = 0

    def build(self, docs):  # type: ignore[no-untyped-def]
        self.builds += 1
        return super().build(docs)


def test_the_same_tools_again_keep_the_built_index_and_take_the_new_version() -> None:
    strategy = CountingBM25()
    index = ToolIndex(strategy)
    index.update(CATALOG, version=1)
    index.update(list(CATALOG), version=2)  # a backend re-listed without change: the same Tool objects
    assert strategy.builds == 1 and index.version == 2
    assert index.search("open an issue").hits[0].id == "github:create_issue"
    changed = [*CATALOG[:-1], make("files", "read_file", "Read a file, now with a new description.")]
    index.update(changed, version=3)
    assert strategy.builds == 2 and index.version == 3
