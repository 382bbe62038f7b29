"""The MiniLM embedder (real model, from the installed packages) and the on-disk embedding cache."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from aperture.discovery import (
    BM25Strategy,
    DenseStrategy,
    Embedder,
    EmbeddingCache,
    EmbeddingModelError,
    LexicalStrategy,
    MiniLMEmbedder,
    SemanticUnavailableError,
    default_strategy,
    semantic_available,
    strategy_named,
)
from aperture.discovery.embedding import MODEL_FILE, TOKENIZER_FILE, Vectors, _PackagedFile, default_cache_dir
from tests.discovery.counting import Counting


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def cosine(a: Vectors, b: Vectors) -> float:
    return float(a @ b)


def test_the_model_files_are_found_and_match_their_hashes(embedder: MiniLMEmbedder) -> None:
    assert semantic_available()
    assert MODEL_FILE.locate().name == "model.onnx"
    assert TOKENIZER_FILE.locate().name == "tokenizer.json"
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 384
    assert MODEL_FILE.sha256[:12] in embedder.model_id


def test_vectors_are_unit_length_and_separate_unrelated_texts(embedder: MiniLMEmbedder) -> None:
    weather, forecast, email, cat = embedder.embed(
        ["weather in Paris", "get the weather forecast for a city", "send an email to a recipient", "a cat on a mat"]
    )
    assert np.allclose(np.linalg.norm([weather, forecast, email, cat], axis=1), 1.0, atol=1e-4)
    assert cosine(weather, forecast) > 0.4
    # With padding tokens pooled in, every cosine comes out near 0.9; unrelated texts must stay far apart.
    assert cosine(weather, email) < 0.3
    assert cosine(email, cat) < 0.3


def test_a_batch_gives_the_same_vectors_as_single_queries(embedder: MiniLMEmbedder) -> None:
    texts = ["short", "a much longer text " * 10, "medium length text here", ""]
    batch = embedder.embed(texts)
    singles = np.stack([embedder.embed_query(t) for t in texts])
    assert batch.shape == (4, 384)
    assert np.allclose(batch, singles, atol=2e-3)
    assert embedder.embed([]).shape == (0, 384)


def test_long_texts_are_truncated_not_rejected(embedder: MiniLMEmbedder) -> None:
    vector = embedder.embed_query("word " * 2000)
    assert vector.shape == (384,)
    assert np.isfinite(vector).all()


def test_a_progress_bar_can_be_asked_for(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed(["one", "two", "three"], progress=True).shape == (3, 384)


def test_a_hash_mismatch_is_a_clear_error() -> None:
    wrong = _PackagedFile(MODEL_FILE.distribution, MODEL_FILE.version, MODEL_FILE.path, "0" * 64)
    with pytest.raises(EmbeddingModelError, match=r"sha256 .* expected 0000"):
        wrong.locate()


def test_another_version_or_a_missing_file_is_a_clear_error() -> None:
    other_version = _PackagedFile(MODEL_FILE.distribution, "9.9.9", MODEL_FILE.path, MODEL_FILE.sha256)
    with pytest.raises(EmbeddingModelError, match=r"1\.0\.0 is installed but 9\.9\.9 is pinned"):
        other_version.locate()
    no_file = _PackagedFile(MODEL_FILE.distribution, MODEL_FILE.version, "nowhere/model.onnx", MODEL_FILE.sha256)
    with pytest.raises(EmbeddingModelError, match=r"without nowhere/model\.onnx"):
        no_file.locate()
    no_package = _PackagedFile("no-such-model-package", "1.0", "model.onnx", MODEL_FILE.sha256)
    with pytest.raises(SemanticUnavailableError, match=r"pip install -e '\.\[semantic\]'"):
        no_package.locate()


def test_without_the_extra_semantic_search_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert not semantic_available()
    assert isinstance(default_strategy(), BM25Strategy)
    for name in ("semantic", "hybrid"):
        with pytest.raises(SemanticUnavailableError, match=r"pip install -e '\.\[semantic\]'") as info:
            strategy_named(name)
        assert "onnxruntime" in info.value.message
    with pytest.raises(SemanticUnavailableError):
        MiniLMEmbedder()
    assert isinstance(strategy_named("bm25"), BM25Strategy)
    assert isinstance(strategy_named("lexical"), LexicalStrategy)


def test_bad_embedder_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_length"):
        MiniLMEmbedder(max_length=2)


def test_the_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "aperture" / "embeddings"
    assert EmbeddingCache().directory == tmp_path / "aperture" / "embeddings"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "aperture" / "embeddings"


def test_a_restart_reads_vectors_from_disk_instead_of_encoding(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    texts = ["get weather: forecast for a city", "send email: send a message", "get weather: forecast for a city"]
    first = Counting(embedder)
    vectors = EmbeddingCache(tmp_path).embed(first, texts)
    assert first.encoded == texts[:2]  # the duplicate text is encoded once
    assert np.array_equal(vectors[0], vectors[2])
    assert [p.name for p in tmp_path.iterdir()] == [EmbeddingCache(tmp_path).path_for(embedder.model_id).name]

    restarted = Counting(embedder)
    again = EmbeddingCache(tmp_path).embed(restarted, texts)
    assert restarted.encoded == []
    assert np.array_equal(again, vectors)

    changed = Counting(embedder)
    EmbeddingCache(tmp_path).embed(changed, [texts[0], "send email: send a message to a recipient"])
    assert changed.encoded == ["send email: send a message to a recipient"]


def test_a_corrupt_cache_file_is_ignored_and_rebuilt(
    embedder: MiniLMEmbedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = EmbeddingCache(tmp_path).path_for(embedder.model_id)
    path.write_bytes(b"not a numpy file")
    counting = Counting(embedder)
    with caplog.at_level(logging.WARNING, logger="aperture.discovery.embedding"):
        EmbeddingCache(tmp_path).embed(counting, ["list files"])
    assert counting.encoded == ["list files"]
    assert "ignoring the embedding cache" in caplog.text

    rebuilt = Counting(embedder)
    EmbeddingCache(tmp_path).embed(rebuilt, ["list files"])
    assert rebuilt.encoded == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind


def test_a_cache_file_of_another_model_or_shape_is_not_trusted(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    path = EmbeddingCache(tmp_path).path_for(embedder.model_id)
    keys = np.frombuffer(EmbeddingCache.key(embedder.model_id, "x"), dtype=np.uint8).reshape(1, 16)
    for model, vectors in [
        ("another-model", np.ones((1, 384), dtype=np.float32)),
        (embedder.model_id, np.ones((1, 12), dtype=np.float32)),
        (embedder.model_id, np.full((1, 384), np.nan, dtype=np.float32)),
    ]:
        with path.open("wb") as file:
            np.savez(file, model=np.str_(model), keys=keys, vectors=vectors)
        counting = Counting(embedder)
        EmbeddingCache(tmp_path).embed(counting, ["x"])
        assert counting.encoded == ["x"]
    with path.open("wb") as file:
        np.savez(file, model=np.str_(embedder.model_id), keys=keys.astype(np.int64), vectors=np.ones((1, 384)))
    counting = Counting(embedder)
    EmbeddingCache(tmp_path).embed(counting, ["x"])
    assert counting.encoded == ["x"]


def test_the_cache_keeps_the_most_recently_used_vectors(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_entries=3)
    cache.embed(embedder, ["a", "b", "c"])
    cache.embed(embedder, ["a"])  # a is now the most recent
    cache.embed(embedder, ["d"])  # b, the least recently used, goes
    counting = Counting(embedder)
    EmbeddingCache(tmp_path, max_entries=3).embed(counting, ["a", "b", "c", "d"])
    assert counting.encoded == ["b"]


def test_a_memory_only_cache_writes_nothing(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "never", persist=False)
    counting = Counting(embedder)
    cache.embed(counting, ["alpha"])
    cache.embed(counting, ["alpha"])
    assert counting.encoded == ["alpha"]
    assert not (tmp_path / "never").exists()
    assert cache.embed(counting, []).shape == (0, 384)


def test_an_unwritable_cache_dir_only_warns(
    embedder: MiniLMEmbedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache dir should be")
    with caplog.at_level(logging.WARNING, logger="aperture.discovery.embedding"):
        vectors = EmbeddingCache(blocker / "cache").embed(embedder, ["beta"])
    assert vectors.shape == (1, 384)
    assert "could not write the embedding cache" in caplog.text


def test_the_dense_strategy_builds_through_the_cache(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    strategy = DenseStrategy(embedder, cache=EmbeddingCache(tmp_path))
    assert strategy.embedder is embedder
    assert strategy.build([]).scores("anything").shape == (0,)


def test_a_request_and_its_clauses_come_from_one_pass_of_the_model(embedder: MiniLMEmbedder) -> None:
    text = "Send an email to Ana and check the weather forecast in Paris"
    spans = [(0, 20), (25, len(text))]
    before = embedder.texts_encoded
    vectors = embedder.embed_spans(text, spans)
    assert embedder.texts_encoded == before + 1
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors[0], embedder.embed_query(text), atol=1e-5)
    # Each clause's vector is closer to that clause encoded on its own than to the other clause.
    email, weather = embedder.embed([text[0:20], text[25:]])
    assert cosine(vectors[1], email) > cosine(vectors[1], weather)
    assert cosine(vectors[2], weather) > cosine(vectors[2], email)
    # A span that holds no token falls back to the whole text.
    assert np.allclose(embedder.embed_spans(text, [(3, 3)])[1], vectors[0], atol=1e-5)


def test_a_request_is_also_pooled_over_its_content_tokens_in_the_same_pass(embedder: MiniLMEmbedder) -> None:
    text = "Can you help me send an email to Ana and check the weather in Paris?"
    spans = [(16, 35), (40, len(text))]
    before = embedder.texts_encoded
    rows = embedder.embed_request(text, spans)
    assert embedder.texts_encoded == before + 1
    assert rows.shape == (4, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    assert np.allclose(rows[0], embedder.embed_query(text), atol=1e-5)
    assert np.allclose(rows[2:], embedder.embed_spans(text, spans)[1:], atol=1e-5)
    # Row 1 pools the same pass's output without "can you help me", "an", "to", "and", "the", "in" and "?".
    encoding = embedder._tokenizer.encode(text)
    hidden, _ = embedder._hidden([encoding.ids])
    keep = [
        t not in {"[CLS]", "[SEP]", "can", "you", "help", "me", "an", "to", "and", "the", "in", "?"}
        for t in encoding.tokens
    ]
    pooled = hidden[0][keep].mean(axis=0)
    assert np.allclose(rows[1], pooled / np.linalg.norm(pooled), atol=1e-5)
    assert not np.allclose(rows[1], rows[0], atol=1e-3)
    # A request of filler words only is pooled over all its tokens.
    filler = embedder.embed_request("can you help me")
    assert np.allclose(filler[1], filler[0], atol=1e-5)
