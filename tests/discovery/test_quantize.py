"""The small embedding model: made once from the packaged one in a child process, kept in the cache directory,
its vectors close to the packaged model's and independent of the batch; where it cannot be made, the packaged
model runs as it is, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from aperture.discovery import MiniLMEmbedder

TEXTS = ["create a GitHub issue for this bug", "what time is it in Tokyo", "convert kilometres to miles", "x"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> MiniLMEmbedder:
    return MiniLMEmbedder(model_dir=tmp_path_factory.mktemp("models"))


def test_the_small_model_is_made_once_and_kept_under_the_cache_directory(small: MiniLMEmbedder, tmp_path: Path) -> None:
    assert small.quantized and "-w8e4-" in small.model_id
    kept = tmp_path  # (a fresh directory: made again there)
    again = MiniLMEmbedder(model_dir=kept)
    made = list((kept / "models").glob("minilm-l6-w8e4-*.onnx"))
    assert len(made) == 1 and made[0].stat().st_size < 25 * 2**20
    stamp = made[0].stat().st_mtime_ns
    assert MiniLMEmbedder(model_dir=kept).quantized and made[0].stat().st_mtime_ns == stamp  # (reused, not remade)
    assert again.model_id == small.model_id


def test_its_vectors_are_close_to_the_packaged_models_and_ignore_the_batch(small: MiniLMEmbedder) -> None:
    packaged = MiniLMEmbedder(quantized=False)
    assert not packaged.quantized and packaged.model_id != small.model_id  # (their vectors are cached apart)
    near = (small.embed(TEXTS) * packaged.embed(TEXTS)).sum(axis=1)
    assert near.min() > 0.99, near
    batch = small.embed([*TEXTS, "a much longer text about many other things " * 8])[: len(TEXTS)]
    singles = np.stack([small.embed_query(text) for text in TEXTS])
    assert np.allclose(batch, singles, atol=1e-5)  # (padding in a batch changes nothing)


def test_where_it_cannot_be_made_the_packaged_model_runs_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="aperture"):
        embedder = MiniLMEmbedder(model_dir=blocked)
    assert not embedder.quantized and "-int8-" in embedder.model_id
    assert "the small embedding model could not be made" in caplog.text and "using the packaged one" in caplog.text
    assert embedder.embed_query("hello").shape == (384,)


def test_long_texts_go_in_smaller_batches_and_short_ones_32_at_a_time() -> None:
    from aperture.discovery.embedding import _batches

    lengths = [256] * 5 + [128] * 6 + [16] * 40
    order = np.argsort(np.array(lengths[::-1]), kind="stable")  # (shortest first, as embed sorts them)
    sizes = [len(batch) for batch in _batches(order, lengths[::-1], 32)]
    assert sizes == [32, 8, 4, 2, 1, 1, 1, 1, 1] and sum(sizes) == len(lengths)


def test_a_batch_holds_at_most_512_tokens_padding_included() -> None:
    from aperture.discovery.embedding import _batches

    lengths = [60] * 16 + [20] * 30
    order = np.argsort(np.array(lengths), kind="stable")
    sizes = [len(batch) for batch in _batches(order, lengths, 32)]
    assert sizes == [25, 8, 8, 5]  # (25 * 20 = 500 tokens; then 5 of 20 padded to 60 with 3 of 60: 8 * 60 = 480)
