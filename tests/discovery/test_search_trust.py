"""Search an agent can trust: exact names first, confidence, intent, down backends, background builds."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from aperture.discovery import (
    DENSE_THRESHOLDS,
    LEXICAL_THRESHOLDS,
    BM25Strategy,
    Confidence,
    DenseStrategy,
    EmbeddingCache,
    HybridStrategy,
    MiniLMEmbedder,
    Overlap,
    SearchDoc,
    SearchStrategy,
    Thresholds,
    ToolIndex,
    evidence,
    judge,
    resolve_strategy,
    strategy_named,
    tokenize,
)
from aperture.discovery.confidence import GENERIC
from aperture.discovery.strategy import Scorer
from aperture.model import Tool, ToolId


def make(ns: str, name: str, description: str, **params: str) -> Tool:
    properties = {p: {"type": "string", "description": d} for p, d in params.items()}
    return Tool(id=ToolId(ns, name), description=description, input_schema={"type": "object", "properties": properties})


CATALOG = [
    make("weather", "get_weather", "Current conditions and the forecast for a city.", city="City name"),
    make("mail", "send_email", "Send an email message to a recipient.", to="Address", body="Text"),
    make("github", "create_issue", "Open a new issue in a repository.", title="Issue title"),
    make("jira", "create_issue", "Create a ticket in the issue tracker.", summary="Summary"),
    make("files", "search", "Find files on disk whose contents match a pattern.", pattern="Regular expression"),
    make("calendar", "createEvent", "Schedule a meeting in the calendar.", start="When it starts"),
]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
def hybrid(embedder: MiniLMEmbedder, tmp_path: Path) -> HybridStrategy:
    return HybridStrategy(dense=DenseStrategy(embedder, cache=EmbeddingCache(tmp_path)))


def index_of(strategy: SearchStrategy, tools: Sequence[Tool] = CATALOG) -> ToolIndex:
    index = ToolIndex(strategy)
    index.update(tools)
    return index


def ids(index: ToolIndex, query: str, **kwargs: object) -> list[str]:
    return [hit.id for hit in index.search(query, **kwargs).hits]  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", [BM25Strategy(), None], ids=["bm25", "hybrid"])
def test_a_query_naming_a_tool_ranks_it_first(strategy: SearchStrategy | None, hybrid: HybridStrategy) -> None:
    index = index_of(strategy or hybrid)
    assert ids(index, "how do I call send_email with an attachment")[0] == "mail:send_email"
    assert ids(index, "use `weather:get_weather`.")[0] == "weather:get_weather"
    assert ids(index, "GET_WEATHER for Paris")[0] == "weather:get_weather"  # case does not matter
    assert ids(index, "createEvent tomorrow")[0] == "calendar:createEvent"
    # Both tools named create_issue lead, before anything else.
    assert set(ids(index, "create_issue about the crash")[:2]) == {"github:create_issue", "jira:create_issue"}
    page = index.search("jira:create_issue")
    assert page.hits[0].id == "jira:create_issue" and page.exact == 1 and page.confidence is Confidence.STRONG


def test_a_plain_word_name_counts_only_as_the_whole_query() -> None:
    index = index_of(BM25Strategy())
    assert index.search("search for the weather in a city").exact == 0
    assert ids(index, "search")[0] == "files:search"
    # Part of a longer identifier is not the name.
    assert index.search("get_weather_history").exact == 0


def test_exact_names_respect_filters() -> None:
    index = index_of(BM25Strategy())
    assert ids(index, "send_email", namespace="github") == []


def test_hybrid_confidence_separates_fitting_and_unrelated_requests(hybrid: HybridStrategy) -> None:
    index = index_of(hybrid)
    fits = index.search("what is the weather forecast in Paris")
    assert fits.hits[0].id == "weather:get_weather"
    assert fits.confidence is not Confidence.NONE and fits.reason == ""
    assert index.search("get the current weather for a city").confidence is Confidence.STRONG
    unrelated = index.search("bake a chocolate cake for my grandmother's birthday")
    assert unrelated.hits and unrelated.confidence is Confidence.NONE
    assert "no available tool" in unrelated.reason and "Stop searching" in unrelated.reason
    assert unrelated.evidence < DENSE_THRESHOLDS.none_below <= fits.evidence


def test_lexical_confidence_works_without_embeddings() -> None:
    index = index_of(BM25Strategy())
    assert index.search("send an email message to a recipient").confidence is Confidence.STRONG
    weak_or_none = index.search("issue the payment refund in the repository of invoices")
    assert weak_or_none.hits and weak_or_none.confidence is not Confidence.STRONG
    nothing = index.search("bake chocolate cake")
    assert nothing.hits == [] and nothing.confidence is Confidence.NONE
    assert "No tool matches these words" in nothing.reason


def test_evidence_and_thresholds() -> None:
    doc = SearchDoc.of(CATALOG[0])
    overlap = Overlap.of(tokenize("get the weather for a city"), doc)
    assert overlap.name == 1.0 and overlap.query == 1.0 and 0 < overlap.described < 1
    assert Overlap.of([], doc) == Overlap(0.0, 0.0, 0.0)
    assert evidence(overlap, 0.5) == pytest.approx(0.5 + 0.2 * 1.0 + 0.9 * overlap.described)
    assert evidence(overlap, None) == pytest.approx(2.0 + overlap.described)
    assert judge(0.0, dense=True) is Confidence.NONE and judge(0.5, dense=True) is Confidence.WEAK
    assert judge(0.9, dense=True) is Confidence.STRONG and judge(0.2, dense=False) is Confidence.NONE
    assert LEXICAL_THRESHOLDS.judge(2.0) is Confidence.STRONG
    assert Thresholds(none_below=1, strong_from=2).judge(1.5) is Confidence.WEAK


def test_overlap_ignores_words_every_tool_description_uses() -> None:
    doc = SearchDoc.of(CATALOG[0])
    generic = Overlap.of(tokenize("get the details of the given item, based on the specified 2 options"), doc)
    assert generic == Overlap(0.0, 0.0, 0.0)
    assert {"get", "detail", "given", "specifi"} <= GENERIC


class _Counting:
    """A scorer recording the texts it was asked to score, delegating to BM25."""

    def __init__(self, inner: Scorer, seen: list[str]) -> None:
        self.inner, self.seen = inner, seen

    def scores(self, query: str):  # type: ignore[no-untyped-def]
        self.seen.append(query)
        return self.inner.scores(query)


def test_intent_is_scored_with_half_the_weight_of_the_query() -> None:
    seen: list[str] = []

    class Strategy:
        name = "counting"

        def build(self, docs: Sequence[SearchDoc]) -> Scorer:
            return _Counting(BM25Strategy().build(docs), seen)

    index = index_of(Strategy())
    plain = index.search("open a new issue").hits
    with_intent = index.search("open a new issue", intent="track a bug in the jira ticket tracker").hits
    assert seen[-2:] == ["open a new issue", "track a bug in the jira ticket tracker"]
    intent_only = {h.id: h.score for h in index.search("track a bug in the jira ticket tracker").hits}
    query_only = {h.id: h.score for h in plain}
    combined = {h.id: h.score for h in with_intent}
    expected = query_only["jira:create_issue"] + 0.5 * intent_only["jira:create_issue"]
    assert combined["jira:create_issue"] == pytest.approx(expected, abs=1e-3)
    assert with_intent[0].id == plain[0].id == "github:create_issue"  # the query still leads


def test_hybrid_uses_intent_too(hybrid: HybridStrategy) -> None:
    index = index_of(hybrid)
    query = "create an issue"
    assert ids(index, query, intent="we track our work in jira tickets")[0] == "jira:create_issue"
    assert ids(index, query, intent="the code lives on github")[0] == "github:create_issue"


def test_tools_of_down_backends_are_marked_or_hidden() -> None:
    index = index_of(BM25Strategy())
    down = {"mail": "backend 'mail' is down (connection refused); retry later or use another tool"}
    marked = index.search("send an email", unavailable=down)
    top = marked.hits[0]
    assert top.id == "mail:send_email" and top.available is False
    assert top.to_dict()["available"] is False and "connection refused" in top.to_dict()["unavailable_reason"]
    assert "available" not in marked.hits[1].to_dict() if len(marked.hits) > 1 else True
    hidden = index.search("send an email", unavailable=down, hide_unavailable=True)
    assert "mail:send_email" not in [h.id for h in hidden.hits]
    only_mail = index.search("send an email", namespace="mail", unavailable=down, hide_unavailable=True)
    assert only_mail.hits == [] and "backend that is down (mail)" in only_mail.reason
    assert "No namespace 'nope'" in index.search("x", namespace="nope", unavailable=down, hide_unavailable=True).reason


def test_a_fallback_serves_until_the_strategy_is_built_in_the_background() -> None:
    release = threading.Event()

    class Slow:
        name = "slow"

        def build(self, docs: Sequence[SearchDoc]) -> Scorer:
            release.wait(10)
            return BM25Strategy().build(docs)

    index = ToolIndex(Slow(), fallback=BM25Strategy())
    index.update(CATALOG)
    assert not index.ready and index.serving == "bm25"
    assert ids(index, "send an email")[0] == "mail:send_email"  # served by the fallback meanwhile
    assert not index.wait_ready(0.01)
    release.set()
    assert index.wait_ready(10) and index.ready and index.serving == "slow"
    version = index.version
    index.update(CATALOG[:2])  # a newer update builds again; the version moves on
    assert index.wait_ready(10) and index.version == version + 1 and len(index) == 2


def test_a_failed_background_build_keeps_the_fallback() -> None:
    class Broken:
        name = "broken"

        def build(self, docs: Sequence[SearchDoc]) -> Scorer:
            raise RuntimeError("model file damaged")

    index = ToolIndex(Broken(), fallback=BM25Strategy())
    index.update(CATALOG)
    assert index.wait_ready(10) and not index.ready
    assert isinstance(index.build_error, RuntimeError)
    assert ids(index, "send an email")[0] == "mail:send_email"


def test_a_large_catalog_is_embedded_in_chunks_in_the_background(
    embedder: MiniLMEmbedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tools = [make("bulk", f"tool_{i}", f"Tool number {i} does task {i % 7}.") for i in range(2100)]
    tools.append(CATALOG[0])
    strategy = HybridStrategy(dense=DenseStrategy(embedder, cache=EmbeddingCache(tmp_path)))
    index = ToolIndex(strategy, fallback=BM25Strategy())
    with caplog.at_level("INFO", logger="aperture.discovery.index"):
        index.update(tools)
        assert index.wait_ready(300) and index.ready
    assert "embedding tools: 2000 of 2101" in caplog.text and "is ready" in caplog.text
    assert ids(index, "weather forecast for a city")[0] == "weather:get_weather"


def test_strategy_names_and_auto() -> None:
    assert resolve_strategy("auto") == "hybrid" and resolve_strategy("bm25") == "bm25"
    assert isinstance(strategy_named("auto"), HybridStrategy)
    with pytest.raises(ValueError, match="unknown search strategy 'fast'"):
        strategy_named("fast")


def test_hybrid_caches_embeddings_where_told(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    strategy = strategy_named("hybrid", cache_dir=tmp_path / "cache")
    assert isinstance(strategy, HybridStrategy) and strategy.dense.cache.directory == tmp_path / "cache"
    strategy.dense._embedder = embedder  # reuse the loaded model
    index_of(strategy)
    assert list((tmp_path / "cache").glob("*.npz"))


def test_a_closed_index_builds_nothing_more_in_the_background() -> None:
    index = ToolIndex(BM25Strategy(), fallback=BM25Strategy())
    index.update(CATALOG)
    assert index.wait_ready(10)
    index.close()
    index.update(CATALOG[:2])
    index.close()  # joins the worker, which stopped at once
    assert not index.ready and ids(index, "send an email")[0] == "mail:send_email"


def test_a_near_exact_request_needs_all_its_words_in_the_tool_and_half_the_name_in_it() -> None:
    from aperture.discovery.confidence import NEAR_EXACT_COSINE, near_exact

    doc = SearchDoc.of(CATALOG[0])  # weather:get_weather
    words = tokenize("weather in a city")
    assert near_exact(words, doc, Overlap(query=1.0, name=1.0, described=0.05), NEAR_EXACT_COSINE)
    assert near_exact(words, doc, Overlap(query=1.0, name=1.0, described=0.05), None)  # lexical: the words alone
    assert near_exact(words, doc, Overlap(query=1.0, name=0.5, described=0.5), 0.9)  # half of the name will do
    assert not near_exact(words, doc, Overlap(query=1.0, name=1.0, described=0.05), NEAR_EXACT_COSINE - 0.01)
    assert not near_exact(words, doc, Overlap(query=1.0, name=0.4, described=0.5), 0.9)  # less than half
    lacking = tokenize("weather on mars")
    assert not near_exact(lacking, doc, Overlap.of(lacking, doc), 0.9)  # a word the tool lacks


def test_abbreviations_count_as_the_words_they_stand_for() -> None:
    from aperture.discovery.confidence import _abbreviates

    assert _abbreviates("km", "kilometr") and _abbreviates("mi", "mile") and _abbreviates("repo", "repositori")
    assert not _abbreviates("k", "kilometr")  # one letter abbreviates too much
    assert not _abbreviates("km", "mile") and not _abbreviates("mk", "kilometr")  # first letter, letters in order
    assert not _abbreviates("km", "km") and not _abbreviates("k2", "k2so")


UNITS = ["km", "mi", "m", "ft", "kg", "lb", "C", "F"]
TOOLBOX = [
    Tool(
        id=ToolId("toolbox", "convert_units"),
        description="Convert a quantity between units of length, mass or temperature.",
        input_schema={
            "type": "object",
            "properties": {
                "value": {"type": "number", "description": "The quantity to convert."},
                "from_unit": {"type": "string", "enum": UNITS, "description": "The unit the value is in."},
                "to_unit": {"type": "string", "enum": UNITS, "description": "The unit to convert to."},
            },
        },
    ),
    make("toolbox", "calculate", "Evaluate an arithmetic expression safely and return its value.", expression="2+2"),
    make("toolbox", "hash_text", "Hash a text with md5, sha1 or sha256.", text="The text"),
    make("toolbox", "add_to_date", "Add days, weeks or months to a date.", date="ISO date", days="How many"),
    make("toolbox", "slugify", "Turn a title into a URL slug.", text="The title"),
]


@pytest.mark.parametrize("strategy", [BM25Strategy(), None], ids=["bm25", "hybrid"])
def test_an_exact_request_in_other_words_is_strong_and_an_unrelated_one_none(
    strategy: SearchStrategy | None, hybrid: HybridStrategy
) -> None:
    index = index_of(strategy or hybrid, TOOLBOX)
    # The tool says "units of length" and lists km and mi: the request names its verb and both units.
    for query in ("convert kilometres to miles", "convert km to miles"):
        page = index.search(query)
        assert page.hits[0].id == "toolbox:convert_units" and page.confidence is Confidence.STRONG, query
    unrelated = index.search("book a table for two at an italian restaurant tonight")
    assert unrelated.confidence is Confidence.NONE


def test_the_first_hits_together_decide_none_and_the_first_alone_strong() -> None:
    from aperture.discovery.confidence import page_evidence

    wrong, right = Overlap(query=0.2, name=0.0, described=0.0), Overlap(query=1.0, name=0.5, described=0.4)
    assert page_evidence([wrong, right], [0.2, 0.5]) == pytest.approx(evidence(right, 0.5))
    # Each part at its best, whichever hit has it.
    assert page_evidence([wrong, right], [0.6, 0.1]) == pytest.approx(0.6 + 0.2 * 0.5 + 0.9 * 0.4)
    assert page_evidence([wrong, right], None) == pytest.approx(evidence(right, None))
    assert page_evidence([], None) == 0.0
    # `none` reads the page's evidence, `strong` the first hit's own.
    assert DENSE_THRESHOLDS.judge(1.0, top=0.5) is Confidence.WEAK
    assert DENSE_THRESHOLDS.judge(1.0) is Confidence.STRONG and DENSE_THRESHOLDS.judge(0.1, top=1.0) is Confidence.NONE


def test_confidence_does_not_depend_on_the_page_size(hybrid: HybridStrategy) -> None:
    index = index_of(hybrid)
    for query in ("what is the weather forecast in Paris", "open a ticket about the login bug", "bake a cake"):
        pages = [index.search(query, limit=n) for n in (1, 3, 10)]
        assert len({(p.confidence, round(p.evidence, 6)) for p in pages}) == 1, query
        assert [h.id for h in pages[0].hits] == [h.id for h in pages[2].hits[:1]]


def test_none_needs_every_one_of_the_first_hits_to_miss() -> None:
    import numpy as np

    class Ranked:
        """Ranks the tools in catalog order, whatever the query: the first tool leads even when it fits least."""

        name = "ranked"

        def build(self, docs: Sequence[SearchDoc]) -> Scorer:
            class Fixed:
                def scores(self, query: str):  # type: ignore[no-untyped-def]
                    return np.linspace(2.0, 1.0, len(docs), dtype=np.float32)

            return Fixed()

    unrelated = make("misc", "slugify", "Turn a title into a URL slug.", text="The title")
    fitting = CATALOG[1]  # mail:send_email
    request = "send an email message to a recipient"
    second = index_of(Ranked(), [unrelated, fitting]).search(request)
    assert [h.id for h in second.hits] == ["misc:slugify", "mail:send_email"]
    assert second.confidence is Confidence.WEAK  # the tool that fits is on the page, not first: not strong
    alone = index_of(Ranked(), [unrelated]).search(request)
    assert alone.confidence is Confidence.NONE and alone.evidence < second.evidence
    # Beyond the first five hits the tool that fits no longer counts.
    others = [make("misc", f"tool_{i}", "Turn a title into a URL slug.") for i in range(5)]
    assert index_of(Ranked(), [*others, fitting]).search(request).confidence is Confidence.NONE
