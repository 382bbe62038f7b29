"""BM25 over separate fields (name, namespace, tags, description, parameters), summed with field boosts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scores
from aperture.discovery.text import tokenize

logger = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG at import, which floods any application log with one line per index.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class _FieldIndex:
    boost: float
    model: bm25s.BM25
    vocab: Mapping[str, int]


class BM25Scorer:
    """Scores a query as `sum(boost[field] * bm25(field))` over the fields that have any text."""

    def __init__(self, docs: Sequence[SearchDoc], boosts: Mapping[str, float], k1: float, b: float) -> None:
        self._count = len(docs)
        self._fields: list[_FieldIndex] = []
        for field in FIELDS:
            boost = boosts.get(field, 0.0)
            corpus = [doc.fields[field] for doc in docs]
            if boost <= 0 or not any(corpus):
                continue
            model = bm25s.BM25(k1=k1, b=b)
            model.index(corpus, show_progress=False)
            self._fields.append(_FieldIndex(boost, model, model.vocab_dict))

    def scores(self, query: str) -> Scores:
        total = np.zeros(self._count, dtype=np.float32)
        tokens = tokenize(query)
        for field in self._fields:
            ids = [field.vocab[t] for t in tokens if t in field.vocab]
            if ids:
                total += field.boost * field.model.get_scores_from_ids(ids)
        return total


class BM25Strategy:
    """BM25 with field boosts (seed 004: name 4x, namespace 2x, tags 1x; description and parameters too)."""

    name = "bm25"

    def __init__(self, boosts: Mapping[str, float] | None = None, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.boosts = dict(DEFAULT_BOOSTS if boosts is None else boosts)
        self.k1 = k1
        self.b = b

    def build(self, docs: Sequence[SearchDoc]) -> BM25Scorer:
        return BM25Scorer(docs, self.boosts, self.k1, self.b)
