"""BM25F over separate fields (name, namespace, tags, description, parameters), with field boosts.

Each field's term frequency is normalised by that field's length against its own average, multiplied by
the field's boost, and the boosted frequencies of all fields are added *before* BM25's saturation
(Robertson & Zaragoza's BM25F). A word that appears in the name and again in the description therefore
counts as a strong match, not as two separate full-strength matches: summing a saturated BM25 per field
instead (what this module did first) let a word repeated across fields outweigh rarer words of the query,
and ranked below plain single-field BM25 on BFCL (R@5 0.752 against 0.792; BM25F: 0.844). The idf is
computed once over the whole tool, so a word common in descriptions does not look rare because it is
rare in names.

Weights are pre-computed per (token, tool) pair and kept in one posting list per token: a query costs
one gather-and-sum over the postings of its tokens. The index is built with vectorised numpy (no Python
loop per posting): about 10x faster to build than `bm25s` on the same fields, which matters when a
large catalog changes (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scores
from aperture.discovery.text import tokenize

# Length normalisation: tool texts are short and their length says little about relevance, so less than the
# textbook 0.75. Picked on a 4,000-query sample of MetaTool single-tool (hybrid R@1 0.573 -> 0.581 from 0.75
# to 0.3; 0.3-0.5 about even) and checked on BFCL pooled (hybrid R@5 0.891 -> 0.894, BM25 alone 0.850 -> 0.852).
DEFAULT_B = 0.3

_Ints = npt.NDArray[np.int64]
_Floats = npt.NDArray[np.float32]


def _field_tokens(docs: Sequence[list[str]], vocab: dict[str, int]) -> tuple[_Ints, _Ints]:
    """The token ids of one field of every document, flattened, and each document's length."""
    lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    setdefault = vocab.setdefault
    total = int(lengths.sum())
    tokens = np.fromiter((setdefault(t, len(vocab)) for d in docs for t in d), dtype=np.int64, count=total)
    return tokens, lengths


def field_weights(
    fields: Sequence[tuple[Sequence[list[str]], float, float]], vocab: dict[str, int], k1: float
) -> tuple[_Ints, _Ints, _Floats]:
    """BM25F weights as parallel arrays `(token_id, doc, weight)`, one entry per distinct pair.

    `fields` holds, per field, the documents' tokens, the field's boost and its length normalisation
    `b`. Uses Lucene's idf, `log(1 + (N - df + 0.5) / (df + 0.5))`, which is never negative, with `df`
    counting the documents that have the token in any field.
    """
    count = len(fields[0][0]) if fields else 0
    flat = [(_field_tokens(docs, vocab), boost, b) for docs, boost, b in fields]
    size = max(len(vocab), 1)
    keys, frequencies = [], []
    for (tokens, lengths), boost, b in flat:
        if not tokens.size:
            continue
        doc_of = np.repeat(np.arange(count, dtype=np.int64), lengths)
        pairs, tf = np.unique(doc_of * size + tokens, return_counts=True)
        norm = 1 - b + b * lengths / max(float(lengths.mean()), 1e-9)
        keys.append(pairs)
        frequencies.append(boost * tf / norm[pairs // size])
    if not keys:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float32)
    pairs, where = np.unique(np.concatenate(keys), return_inverse=True)
    tf = np.bincount(where, weights=np.concatenate(frequencies))
    pair_doc, pair_token = np.divmod(pairs, size)
    df = np.bincount(pair_token, minlength=size)
    idf = np.log1p((count - df + 0.5) / (df + 0.5))
    weight = idf[pair_token] * tf * (k1 + 1) / (tf + k1)
    return pair_token, pair_doc, weight.astype(np.float32)


class BM25Scorer:
    """Scores a query as the sum over its tokens of the BM25F weight of the token in each tool."""

    def __init__(
        self, docs: Sequence[SearchDoc], boosts: Mapping[str, float], k1: float, b: float | Mapping[str, float]
    ) -> None:
        self._count = len(docs)
        self._vocab: dict[str, int] = {}
        fields = [
            ([d.fields[f] for d in docs], boosts[f], b if isinstance(b, float | int) else b.get(f, DEFAULT_B))
            for f in FIELDS
            if boosts.get(f, 0.0) > 0
        ]
        tokens, doc_ids, weights = field_weights(fields, self._vocab, k1)
        order = np.argsort(tokens, kind="stable")
        self._docs: _Ints = doc_ids[order]
        self._weights: _Floats = weights[order]
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
    """BM25F with field boosts (seed 004: name 4x, namespace 2x, tags 1x; description and parameters too).

    `b` is the length normalisation of every field, or a mapping of field -> `b` (missing fields: `DEFAULT_B`).
    """

    name = "bm25"

    def __init__(
        self, boosts: Mapping[str, float] | None = None, *, k1: float = 1.2, b: float | Mapping[str, float] = DEFAULT_B
    ) -> None:
        values = [b] if isinstance(b, float | int) else list(b.values())
        if k1 < 0 or math.isnan(k1) or not all(0 <= v <= 1 for v in values):
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1; got k1={k1}, b={b}")
        self.boosts = dict(DEFAULT_BOOSTS if boosts is None else boosts)
        self.k1 = k1
        self.b = b if isinstance(b, float | int) else dict(b)

    def build(self, docs: Sequence[SearchDoc]) -> BM25Scorer:
        return BM25Scorer(docs, self.boosts, self.k1, self.b)
