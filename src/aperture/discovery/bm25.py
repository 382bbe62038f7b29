"""BM25 over separate fields (name, namespace, tags, description, parameters), summed with field boosts.

Each field gets its own BM25 statistics (document frequency, average length), so a word common in
descriptions does not dilute a rare word in names. Because the final score is a boosted sum, the
per-field weights are pre-multiplied by their boost and merged into one posting list per token:
a query then costs one gather-and-sum over the postings of its tokens.

The index is built with vectorised numpy (no Python loop per posting): about 10x faster to build than
`bm25s` on the same fields, which matters when a large catalog changes (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scores
from aperture.discovery.text import tokenize

_Ints = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float32]


def field_weights(
    docs: Sequence[list[str]], vocab: dict[str, int], k1: float, b: float
) -> tuple[_Ints, _Ints, _Floats]:
    """BM25 weights of one field as parallel arrays `(token_id, doc, weight)`, one entry per distinct pair.

    Uses Lucene's idf, `log(1 + (N - df + 0.5) / (df + 0.5))`, which is never negative.
    """
    count = len(docs)
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=count)
    total = int(lengths.sum())
    if total == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    setdefault = vocab.setdefault
    tokens = np.fromiter((setdefault(t, len(vocab)) for d in docs for t in d), dtype=np.int64, count=total)
    doc_of = np.repeat(np.arange(count, dtype=np.int64), lengths)
    pairs, tf = np.unique(doc_of * len(vocab) + tokens, return_counts=True)
    pair_doc, pair_token = np.divmod(pairs, len(vocab))
    df = np.bincount(pair_token, minlength=len(vocab))
    idf = np.log1p((count - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
    weight = idf[pair_token] * tf * (k1 + 1) / (tf + norm[pair_doc])
    return pair_token, pair_doc, weight.astype(np.float32)


class BM25Scorer:
    """Scores a query as `sum(boost[field] * bm25(field))` over the fields."""

    def __init__(self, docs: Sequence[SearchDoc], boosts: Mapping[str, float], k1: float, b: float) -> None:
        self._count = len(docs)
        self._vocab: dict[str, int] = {}
        token_parts, doc_parts, weight_parts = [], [], []
        for field in FIELDS:
            boost = boosts.get(field, 0.0)
            if boost <= 0:
                continue
            tokens, doc_ids, weights = field_weights([d.fields[field] for d in docs], self._vocab, k1, b)
            token_parts.append(tokens)
            doc_parts.append(doc_ids)
            weight_parts.append(weights * np.float32(boost))
        empty_ints, empty_floats = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        tokens = np.concatenate(token_parts) if token_parts else empty_ints
        order = np.argsort(tokens, kind="stable")
        self._docs: _Ints = (np.concatenate(doc_parts) if doc_parts else empty_ints)[order]
        self._weights: _Floats = (np.concatenate(weight_parts) if weight_parts else empty_floats)[order]
        self._starts: _Ints = np.concatenate(([0], np.cumsum(np.bincount(tokens, minlength=len(self._vocab)))))

    def scores(self, query: str) -> Scores:
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return np.zeros(self._count, dtype=np.float32)
        spans = [(int(self._starts[i]), int(self._starts[i + 1])) for i in ids]
        docs = np.concatenate([self._docs[s:e] for s, e in spans])
        weights = np.concatenate([self._weights[s:e] for s, e in spans])
        return np.bincount(docs, weights=weights, minlength=self._count).astype(np.float32)


class BM25Strategy:
    """BM25 with field boosts (seed 004: name 4x, namespace 2x, tags 1x; description and parameters too)."""

    name = "bm25"

    def __init__(self, boosts: Mapping[str, float] | None = None, *, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1 or math.isnan(k1):
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1; got k1={k1}, b={b}")
        self.boosts = dict(DEFAULT_BOOSTS if boosts is None else boosts)
        self.k1 = k1
        self.b = b

    def build(self, docs: Sequence[SearchDoc]) -> BM25Scorer:
        return BM25Scorer(docs, self.boosts, self.k1, self.b)
