"""Semantic and hybrid search with the real MiniLM model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aperture.discovery import (
    BM25Strategy,
    DenseStrategy,
    EmbeddingCache,
    HybridStrategy,
    MiniLMEmbedder,
    SearchDoc,
    ToolIndex,
    default_strategy,
    strategy_named,
    tool_text,
)
from aperture.model import Tool, ToolId
from tests.discovery.counting import Counting


def tool(key: str, description: str, **params: str) -> Tool:
    namespace, name = key.split(":")
    properties = {p: {"type": "string", "description": d} for p, d in params.items()}
    return Tool(
        id=ToolId(namespace, name), description=description, input_schema={"type": "object", "properties": properties}
    )


CATALOG = [
    tool("weather:get_weather", "Current conditions and the forecast for a location.", city="City name"),
    tool("mail:send_email", "Send an email message to a recipient.", to="Address of the recipient", body="Text"),
    tool("github:create_issue", "Open a new issue in a repository.", title="Issue title"),
    tool("ledger:xk47_export", "Write the ledger to disk."),
    tool("calendar:createEvent", "Schedule a meeting in the calendar.", start_time="When it starts"),
]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
def dense(embedder: MiniLMEmbedder, tmp_path: Path) -> DenseStrategy:
    return DenseStrategy(embedder, cache=EmbeddingCache(tmp_path))


def ranked(strategy: DenseStrategy | HybridStrategy, query: str) -> list[str]:
    index = ToolIndex(strategy)
    index.update(CATALOG)
    return [hit.id for hit in index.search(query, limit=5).hits]


def test_tool_text_reads_the_name_as_words_with_description_and_parameters() -> None:
    assert tool_text(SearchDoc.of(CATALOG[4])) == (
        "create Event: Schedule a meeting in the calendar. Parameters: start time (When it starts)"
    )
    bare = Tool(id=ToolId("x", "ping"), input_schema={"type": "object", "properties": {"host": {}}})
    assert tool_text(SearchDoc.of(bare)) == "ping:  Parameters: host"


def test_semantic_search_ranks_by_meaning(dense: DenseStrategy) -> None:
    scores = dense.build([SearchDoc.of(t) for t in CATALOG]).scores("weather in Paris")
    assert scores[0] > scores[1] + 0.2  # get_weather well above send_email
    assert ranked(dense, "weather in Paris")[0] == "weather:get_weather"
    assert ranked(dense, "will it rain tomorrow")[0] == "weather:get_weather"
    assert ranked(dense, "book a meeting with Ana on Monday")[0] == "calendar:createEvent"


def test_dense_scores_are_cosines_floored_at_zero(dense: DenseStrategy) -> None:
    scorer = dense.build([SearchDoc.of(t) for t in CATALOG])
    cosines = scorer.cosines("weather in Paris")
    assert cosines.dtype == np.float32
    assert np.array_equal(scorer.scores("weather in Paris"), np.maximum(cosines, 0))
    assert cosines.min() >= -1 and cosines.max() <= 1


def test_hybrid_ranks_by_meaning_and_by_exact_words(dense: DenseStrategy) -> None:
    hybrid = HybridStrategy(dense=dense)
    assert ranked(hybrid, "weather in Paris")[0] == "weather:get_weather"
    assert ranked(hybrid, "email my boss")[0] == "mail:send_email"
    # An identifier the model has never seen: only the lexical side knows it.
    assert ranked(hybrid, "xk47")[0] == "ledger:xk47_export"
    assert ranked(hybrid, "run xk47 now")[0] == "ledger:xk47_export"


def test_hybrid_fuses_min_max_normalised_scores_with_weights(dense: DenseStrategy) -> None:
    docs = [SearchDoc.of(t) for t in CATALOG]
    hybrid = HybridStrategy(dense=dense, lexical_weight=0.25, dense_weight=0.75).build(docs)
    lexical = BM25Strategy().build(docs).scores("send weather")
    cosines = dense.build(docs).clause_cosines("send weather", [])[0]  # the content-pooled query vector's
    expected = 0.25 * lexical / lexical.max() + 0.75 * (cosines - cosines.min()) / (cosines.max() - cosines.min())
    assert np.allclose(hybrid.scores("send weather"), expected, atol=1e-6)
    only_lexical = HybridStrategy(dense=dense, lexical_weight=1, dense_weight=0).build(docs)
    assert np.allclose(only_lexical.scores("xk47"), [0, 0, 0, 1, 0])


def test_quoted_payload_does_not_steer_the_lexical_side(dense: DenseStrategy) -> None:
    query = "Email Ana the note 'weather forecast for Paris, sunny weather all week'"
    docs = [SearchDoc.of(t) for t in CATALOG]
    assert int(np.argmax(BM25Strategy().build(docs).scores(query))) == 0  # BM25 alone goes for the weather
    only_lexical = HybridStrategy(dense=dense, lexical_weight=1, dense_weight=0)
    assert ranked(only_lexical, query)[0] == "mail:send_email"
    assert ranked(HybridStrategy(dense=dense), query)[0] == "mail:send_email"
    # A request that is all quote keeps its words.
    assert ranked(only_lexical, "'weather forecast for Paris'")[0] == "weather:get_weather"


def test_hybrid_on_one_tool_still_finds_it(dense: DenseStrategy) -> None:
    index = ToolIndex(HybridStrategy(dense=dense))
    index.update(CATALOG[:1])
    assert [h.id for h in index.search("forecast").hits] == ["weather:get_weather"]
    assert [h.id for h in index.search("will it rain").hits] == ["weather:get_weather"]


def test_hybrid_weights_are_checked(dense: DenseStrategy) -> None:
    with pytest.raises(ValueError, match="weights"):
        HybridStrategy(dense=dense, lexical_weight=-1)
    with pytest.raises(ValueError, match="weights"):
        HybridStrategy(dense=dense, lexical_weight=0, dense_weight=0)


def test_repeated_queries_reuse_their_vector(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    strategy = DenseStrategy(embedder, cache=EmbeddingCache(tmp_path), query_cache_size=2)
    before = embedder.texts_encoded
    first = strategy.query_vector("alpha")
    assert strategy.query_vector("alpha") is first
    assert embedder.texts_encoded == before + 1
    strategy.query_vector("beta")
    strategy.query_vector("gamma")  # alpha, the least recently used, is dropped
    strategy.query_vector("alpha")
    assert embedder.texts_encoded == before + 4


def test_an_index_update_embeds_only_new_tools(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    index = ToolIndex(HybridStrategy(dense=DenseStrategy(embedder, cache=EmbeddingCache(tmp_path))))
    index.update(CATALOG[:3])
    before = embedder.texts_encoded
    index.update(CATALOG)
    assert embedder.texts_encoded == before + 2


def test_strategies_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    hybrid = strategy_named("hybrid")
    assert isinstance(hybrid, HybridStrategy) and hybrid.name == "hybrid"
    assert (hybrid.lexical_weight, hybrid.dense_weight) == (0.3, 0.7)
    assert isinstance(hybrid.lexical, BM25Strategy)
    semantic = strategy_named("semantic")
    assert isinstance(semantic, DenseStrategy) and semantic.name == "semantic"
    assert isinstance(default_strategy(), HybridStrategy)
    with pytest.raises(ValueError, match="auto, hybrid, semantic, bm25, lexical"):
        strategy_named("dense")
    # The real default embedder, loaded on first use, with its cache under XDG_CACHE_HOME.
    index = ToolIndex(hybrid)
    index.update(CATALOG)
    assert index.search("weather in Paris").hits[0].id == "weather:get_weather"
    assert list((tmp_path / "aperture" / "embeddings").glob("*.npz"))


def test_each_clause_of_a_request_can_bring_its_own_tool(dense: DenseStrategy) -> None:
    query = "Send an email to Ana about the release and check the weather forecast in Paris"
    whole = ranked(HybridStrategy(BM25Strategy(), dense, clause_weight=0.0), query)
    split = ranked(HybridStrategy(BM25Strategy(), dense), query)
    assert {"mail:send_email", "weather:get_weather"} <= set(split[:2])
    assert len(split) >= len(whole)


MAIL = [
    tool("mail:send_email", "Send an email message to a recipient.", to="Address", body="Text"),
    tool("mail:send_bulk_email", "Send one email message to many recipients at once.", to="Addresses"),
    tool("mail:draft_email", "Write an email draft to send later.", to="Address"),
    tool("mail:forward_email", "Forward an email message to another recipient.", to="Address"),
    tool("mail:schedule_email", "Send an email message at a later time.", when="Time"),
    *CATALOG[:1],
    *CATALOG[2:],
]


def ranked_in(catalog: list[Tool], strategy: HybridStrategy, query: str) -> list[str]:
    index = ToolIndex(strategy)
    index.update(catalog)
    return [hit.id for hit in index.search(query, limit=5).hits]


def test_each_clauses_best_tool_comes_right_after_the_requests_best(dense: DenseStrategy) -> None:
    query = "Send an email message to the team, forward the email to Bob, and create a ticket in the repository."
    lifted = ranked_in(MAIL, HybridStrategy(BM25Strategy(), dense, clause_floor=None), query)
    assert lifted[:2] == ["mail:forward_email", "github:create_issue"]
    # Without it, the variants of the first need fill the places before the second need's tool.
    plain = ranked_in(MAIL, HybridStrategy(BM25Strategy(), dense, clause_tops=False), query)
    assert plain.index("github:create_issue") > 2


def test_a_clause_that_fits_no_tool_lifts_nothing(dense: DenseStrategy) -> None:
    query = "I need your help with a few things today. Send an email message to my manager."
    assert "weather:get_weather" in ranked_in(MAIL, HybridStrategy(BM25Strategy(), dense, clause_floor=None), query)[:2]
    assert "weather:get_weather" not in ranked_in(MAIL, HybridStrategy(BM25Strategy(), dense), query)[:3]


def test_clause_weight_is_checked() -> None:
    with pytest.raises(ValueError, match="clause_weight"):
        HybridStrategy(BM25Strategy(), DenseStrategy(embedder=object()), clause_weight=1.5)  # type: ignore[arg-type]


def test_a_request_and_its_clauses_are_encoded_once_and_cached(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    strategy = DenseStrategy(embedder, cache=EmbeddingCache(tmp_path))
    query = "Send an email to Ana about the release and check the weather forecast in Paris"
    spans = [(0, 37), (42, len(query))]
    before = embedder.texts_encoded
    vectors = strategy.request_vectors(query, spans)
    assert vectors.shape == (3, 384)
    assert strategy.request_vectors(query, spans) is vectors
    # The same pass gave the request's plain vector, which confidence asks for and ranking uses too.
    plain = strategy.query_vector(query)
    assert embedder.texts_encoded == before + 1
    assert np.allclose(plain, embedder.embed_query(query), atol=1e-5)
    assert np.allclose(vectors[0], plain, atol=1e-5)
    # With content pooling, ranking uses the vector pooled over the request's content tokens only.
    pooled = DenseStrategy(embedder, cache=EmbeddingCache(tmp_path), content_pooling=True)
    content = pooled.request_vectors(query, spans)
    assert np.allclose(content[0], embedder.embed_request(query)[1], atol=1e-5)
    assert not np.allclose(content[0], plain, atol=1e-3) and np.allclose(content[1:], vectors[1:], atol=1e-5)


def test_without_late_chunking_the_clauses_go_in_one_batch(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    counting = Counting(embedder)
    strategy = DenseStrategy(counting, cache=EmbeddingCache(tmp_path), late_chunking=False)
    query = "Send an email to Ana and check the weather forecast"
    vectors = strategy.request_vectors(query, [(0, 19), (24, len(query))])
    assert counting.encoded == [query, query[0:19], query[24:]]
    assert np.allclose(vectors[1], embedder.embed_query(query[0:19]), atol=2e-3)
