"""A real embedder held back half-way (a test double): the first half of a catalog is embedded at once, the
rest only when the test releases it, so a search can be made while the semantic index is warming."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from aperture.discovery import MiniLMEmbedder
from aperture.discovery.embedding import Progress, Vectors


class Held:
    """Wraps the real MiniLM embedder; `embed` of a catalog stops half-way until `release` is set."""

    def __init__(self, inner: MiniLMEmbedder, release: threading.Event) -> None:
        self.inner = inner
        self.release = release
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.halfway = threading.Event()

    def embed(self, texts: Sequence[str], *, progress: Progress = None) -> Vectors:
        half = len(texts) // 2
        first = self.inner.embed(texts[:half], progress=progress)
        self.halfway.set()
        self.release.wait(60)
        return np.concatenate([first, self.inner.embed(texts[half:], progress=progress)])

    def embed_query(self, text: str) -> Vectors:
        return self.inner.embed_query(text)
