"""Lexical search: weighted token overlap, the dependable baseline with no corpus statistics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scores
from aperture.discovery.text import tokenize


class LexicalScorer:
    """Each query token adds its field's boost once per field it occurs in."""

    def __init__(self, docs: Sequence[SearchDoc], boosts: Mapping[str, float]) -> None:
        self._count = len(docs)
        weights: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for i, doc in enumerate(docs):
            for field in FIELDS:
                boost = boosts.get(field, 0.0)
                for token in set(doc.fields[field]):
                    weights[token][i] += boost
        self._postings = {
            token: (np.fromiter(d.keys(), dtype=np.int64), np.fromiter(d.values(), dtype=np.float32))
            for token, d in weights.items()
        }

    def scores(self, query: str) -> Scores:
        total = np.zeros(self._count, dtype=np.float32)
        for token in set(tokenize(query)):
            posting = self._postings.get(token)
            if posting is not None:
                total[posting[0]] += posting[1]
        return total


class LexicalStrategy:
    """Token overlap weighted by field (name counts most)."""

    name = "lexical"

    def __init__(self, boosts: Mapping[str, float] | None = None) -> None:
        self.boosts = dict(DEFAULT_BOOSTS if boosts is None else boosts)

    def build(self, docs: Sequence[SearchDoc]) -> LexicalScorer:
        return LexicalScorer(docs, self.boosts)
