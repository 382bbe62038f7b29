"""A real embedder that counts what it is asked to encode (for cache and single-pass tests)."""

from __future__ import annotations

from collections.abc import Sequence

from aperture.discovery import MiniLMEmbedder
from aperture.discovery.embedding import Progress, Vectors


class Counting:
    """The real embedder, recording the texts it encodes (it has no `embed_spans`)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.encoded: list[str] = []

    def embed(self, texts: Sequence[str], *, progress: Progress = None) -> Vectors:
        self.encoded += texts
        return self.inner.embed(texts, progress=progress)

    def embed_query(self, text: str) -> Vectors:
        self.encoded.append(text)
        return self.inner.embed_query(text)
