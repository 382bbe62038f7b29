"""The `SearchStrategy` protocol: build a scorer over documents, score every document for a query."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from aperture.discovery.document import SearchDoc

Scores = npt.NDArray[np.float32]

# Seed 004's field boosts, plus the description and parameter text it leaves implicit.
DEFAULT_BOOSTS: Mapping[str, float] = {
    "name": 4.0,
    "namespace": 2.0,
    "tags": 1.0,
    "description": 1.0,
    "parameters": 0.5,
}


@runtime_checkable
class Scorer(Protocol):
    """An immutable scorer over a fixed list of documents."""

    def scores(self, query: str) -> Scores:
        """One score per document (0 means no match), in document order."""
        ...


@runtime_checkable
class SearchStrategy(Protocol):
    """Builds scorers; one strategy object serves every rebuild of the index."""

    name: str

    def build(self, docs: Sequence[SearchDoc]) -> Scorer: ...
