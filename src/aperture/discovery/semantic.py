"""Semantic search (cosine similarity of sentence embeddings) and hybrid search (BM25 fused with it).

Dense retrieval alone loses to BM25 on some catalogs (exact identifiers, rare words), so it is never a
default: `HybridStrategy` is. Per query it min-max normalises the lexical scores and the cosines over the
catalog and adds them with weights (0.3 lexical, 0.7 dense by default), the simple fusion that measured
best (reciprocal-rank fusion and equal weights were weaker).

A request that needs several tools ("the latest news about Tesla and how the stock took it") is also scored
clause by clause (`text.clauses`): each tool keeps the best of its fused score for the whole request and
0.8x its best fused score for any one clause, so every part of the task can bring its own tool into the
top five instead of five variants of the first part (MetaTool multi-tool Comp@5 0.513 -> 0.551; 0.9x
gave 0.573 but cost single-tool R@1 0.010 and BFCL R@5 0.006, 0.8x costs 0.002 and 0.001). On top of that,
each clause's best tool is placed right after the request's best, in the clauses' order (`clause_tops`), so
a task of several needs has one tool per need at the top rather than five variants of its main need; a
clause whose best tool has a cosine under `CLAUSE_FLOOR` (a sentence of preamble) lifts nothing. See
docs/search.md for what it moved on each development set.

The clauses are not encoded one by one: the request goes through the model once and each clause's vector
pools the output of its own tokens (`MiniLMEmbedder.embed_spans`, "late chunking"). Encoding is most of a
search's time and costs a fixed fee per call plus a fee per token, so separate calls made a two-part
request about 3x as slow as a short one (p50 30 ms against 9 ms at 10k tools), and one padded batch is no
cheaper on one thread. Late chunking ranks as well or a little better (MetaTool multi Comp@5 0.551 ->
0.557, single R@1 and BFCL R@5 +0.000 to +0.005 on 2,000-query samples).

The query's vector for ranking may pool the model's output over its content tokens only, leaving out stop
words, request filler ("can you help me find ...") and punctuation (`content_pooling=True`, through
`MiniLMEmbedder.embed_request`). It is off by default: tuned on MetaTool multi-tool and BFCL (BFCL pooled R@5
0.8953 -> 0.8999, MetaTool multi Comp@5 0.576 -> 0.598), it did not hold on the other development sets
(1,000-query samples, without it: RestBench R@5 +0.019, Gorilla +0.009, MetaTool single +0.002, BFCL -0.004,
Seal-Tools -0.003; geometric mean of the ratios to plain BM25, R@5 1.164 -> 1.178, nDCG@5 1.187 -> 1.198;
see docs/search.md). Confidence uses the plain vector either way.

Importing this module never needs the `semantic` extra; building a strategy without it raises
`SemanticUnavailableError`, which says what to install.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from aperture.discovery.bm25 import BM25Strategy
from aperture.discovery.confidence import DENSE_THRESHOLDS
from aperture.discovery.document import SearchDoc
from aperture.discovery.embedding import (
    Embedder,
    EmbeddingCache,
    MiniLMEmbedder,
    Vectors,
    require_semantic,
)
from aperture.discovery.embedding import semantic_available as semantic_available
from aperture.discovery.strategy import Scorer, Scores, SearchStrategy
from aperture.discovery.text import clause_spans, split_identifier, without_quoted

_SEPARATORS = re.compile(r"[_\-.:/\s]+")
# A clause whose best tool has a lower cosine than this fits nothing ("I need your help with my project"):
# its top is not lifted. The `none` threshold of confidence's dense evidence, taken as it is, not fitted.
CLAUSE_FLOOR = DENSE_THRESHOLDS.none_below


def tool_text(doc: SearchDoc) -> str:
    """The text embedded for a tool: its name as words, its description, its parameters' names and descriptions."""
    tool = doc.tool
    name = " ".join(_SEPARATORS.split(split_identifier(tool.name))).strip()
    parts = [f"{name}: {' '.join(tool.description.split())}"]
    params = []
    for param in tool.parameters():
        words = " ".join(_SEPARATORS.split(split_identifier(param.name))).strip()
        description = " ".join(param.description.split())
        params.append(f"{words} ({description})" if description else words)
    if params:
        parts.append("Parameters: " + "; ".join(params))
    return " ".join(parts)


class DenseScorer:
    """Cosine similarity of the query's vector with every tool's vector (negative cosines count as 0)."""

    def __init__(
        self,
        vectors: Vectors,
        query_vector: Callable[[str], Vectors],
        request_vectors: Callable[[str, Sequence[tuple[int, int]]], Vectors] | None = None,
    ) -> None:
        self.vectors = vectors
        self._query_vector = query_vector
        self._request_vectors = request_vectors
        self._last: tuple[str, Scores] | None = None

    def cosines(self, query: str) -> Scores:
        """The raw cosines, in document order (between -1 and 1)."""
        last = self._last
        if last is not None and last[0] == query:
            return last[1]  # the hybrid ranked this query just now; confidence asks again
        if not len(self.vectors):
            return np.zeros(0, dtype=np.float32)
        cosines = self._cosines(self._query_vector(query))
        self._last = (query, cosines)
        return cosines

    def _cosines(self, vector: Vectors) -> Scores:
        # einsum, not `@`: a matrix-vector product through multi-threaded BLAS has a p99 of ~10 ms on a
        # busy 2-core machine (its threads fight ONNX Runtime's); einsum runs on one core in ~0.5 ms at 10k.
        # Several vectors go one at a time: einsum's matrix-matrix loop is slower than that.
        cosines: Scores = np.einsum("ij,j->i", self.vectors, vector)
        return cosines

    def scores(self, query: str) -> Scores:
        return np.maximum(self.cosines(query), np.float32(0))

    def cosine(self, query: str, position: int) -> float:
        """The raw cosine of the query and one tool (what confidence is judged on)."""
        last = self._last
        if last is not None and last[0] == query:
            return float(last[1][position])
        return float(np.dot(self.vectors[position], self._query_vector(query)))

    def clause_cosines(self, query: str, spans: Sequence[tuple[int, int]]) -> list[Scores]:
        """The cosines a hybrid search ranks with: of the whole query (first) and of each of its clauses.

        With `request_vectors` the whole query's row is its content-pooled vector (`DenseStrategy`), which
        ranks better than the plain one `cosines` gives; without, the plain one.
        """
        if self._request_vectors is None or not len(self.vectors):
            return [self.cosines(query)] + [self.cosines(query[s:e]) for s, e in spans]
        return [self._cosines(vector) for vector in self._request_vectors(query, spans)]


class DenseStrategy:
    """Semantic search with an `Embedder` (all-MiniLM-L6-v2 by default), tool vectors cached on disk.

    The embedder is created on first use, so naming the strategy costs nothing; the vectors of the last
    `query_cache_size` queries are kept, because encoding the query is most of a search's time.
    """

    name = "semantic"

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        cache: EmbeddingCache | None = None,
        text: Callable[[SearchDoc], str] = tool_text,
        query_cache_size: int = 128,
        progress: bool | None = None,
        late_chunking: bool = True,
        content_pooling: bool = False,
    ) -> None:
        if embedder is None:
            require_semantic()
        self.late_chunking = late_chunking
        self.content_pooling = content_pooling
        self._embedder = embedder
        self.cache = cache if cache is not None else EmbeddingCache()
        self.text = text
        self.progress = progress
        self._query_cache_size = query_cache_size
        self._queries: OrderedDict[str | tuple[str, tuple[tuple[int, int], ...]], Vectors] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        """The embedder, loaded (and its files checked) on first use."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = MiniLMEmbedder()  # (the small model is kept once per user, not per catalog)
        return self._embedder

    def build(self, docs: Sequence[SearchDoc]) -> DenseScorer:
        texts = [self.text(doc) for doc in docs]
        vectors = self.cache.embed(self.embedder, texts, progress=self.progress)
        return DenseScorer(vectors, self.query_vector, self.request_vectors)

    def query_vector(self, query: str) -> Vectors:
        """The query's vector, from a small LRU of recent queries when possible."""
        vector = self._cached(query)
        if vector is None:
            vector = self.embedder.embed_query(query)
            self._remember(query, vector)
        return vector

    def request_vectors(self, query: str, spans: Sequence[tuple[int, int]]) -> Vectors:
        """The vectors a hybrid search ranks with: the query's (row 0) and each `(start, end)` span's (its
        clauses), cached.

        With an embedder that has `embed_request` (MiniLM's), one pass of the model gives them all, and row 0
        pools the query's content tokens only; its plain vector (`query_vector`, for confidence) comes from
        the same pass and is cached too. Otherwise row 0 is the plain vector, from `embed_spans` when the
        embedder has it, else the query and its clauses go to `embed` as one batch.
        """
        key = (query, tuple(spans))
        vectors = self._cached(key)
        if vectors is None:
            embedder = self.embedder
            embed_request = getattr(embedder, "embed_request", None)
            embed_spans = getattr(embedder, "embed_spans", None)
            plain = None
            if self.late_chunking and callable(embed_request):
                rows = np.asarray(embed_request(query, spans), dtype=np.float32)
                plain = rows[0]
                vectors = rows[1:] if self.content_pooling else np.concatenate([rows[:1], rows[2:]])
            elif self.late_chunking and callable(embed_spans):
                vectors = np.asarray(embed_spans(query, spans), dtype=np.float32)
            else:
                vectors = embedder.embed([query] + [query[s:e] for s, e in spans], progress=False)
            self._remember(key, vectors)
            if self._cached(query) is None:
                self._remember(query, vectors[0] if plain is None else plain)
        return vectors

    def _cached(self, key: str | tuple[str, tuple[tuple[int, int], ...]]) -> Vectors | None:
        with self._lock:
            vector = self._queries.get(key)
            if vector is not None:
                self._queries.move_to_end(key)
            return vector

    def _remember(self, key: str | tuple[str, tuple[tuple[int, int], ...]], vector: Vectors) -> None:
        with self._lock:
            self._queries[key] = vector
            while len(self._queries) > self._query_cache_size:
                self._queries.popitem(last=False)


def _min_max(values: Scores) -> Scores:
    """`(v - min) / (max - min)`; when all values are equal, 1 where positive and 0 elsewhere."""
    if not len(values):
        return values
    low, high = values.min(), values.max()
    if high - low <= 1e-9:
        return (values > 0).astype(np.float32)
    normalised: Scores = ((values - low) / (high - low)).astype(np.float32)
    return normalised


class HybridScorer:
    """Lexical and dense scores, each min-max normalised for the query, added with weights; clauses too."""

    def __init__(
        self,
        lexical: Scorer,
        dense: DenseScorer,
        lexical_weight: float,
        dense_weight: float,
        clause_weight: float = 0.0,
        clause_tops: bool = False,
        clause_floor: float | None = None,
    ) -> None:
        self.lexical = lexical
        self.dense = dense
        self._weights = np.float32(lexical_weight), np.float32(dense_weight)
        self._clause_weight = np.float32(clause_weight)
        self._clause_tops = clause_tops
        self._clause_floor = clause_floor

    def scores(self, query: str) -> Scores:
        spans = clause_spans(query) if self._clause_weight > 0 else []
        if len(spans) <= 1:
            spans = []
        lexical_weight, dense_weight = self._weights
        cosines = self.dense.clause_cosines(query, spans)
        # Quoted payload ("... with the subject 'Sales Forecast Request'") only reaches the dense side, which
        # reads it in context; as BM25 terms its rare words outweigh the task's.
        if not spans:
            lexical = self.lexical.scores(without_quoted(query))
            return lexical_weight * _min_max(lexical) + dense_weight * _min_max(cosines[0])
        texts = [query] + [query[s:e] for s, e in spans]
        fused = [
            lexical_weight * _min_max(self.lexical.scores(without_quoted(text))) + dense_weight * _min_max(row)
            for text, row in zip(texts, cosines, strict=True)
        ]
        best: Scores = np.maximum(fused[0], self._clause_weight * np.max(fused[1:], axis=0))
        if self._clause_tops:
            best = self._lift_clause_tops(best, fused[1:], cosines[1:])
        return best

    def _lift_clause_tops(self, best: Scores, fused: Sequence[Scores], cosines: Sequence[Scores]) -> Scores:
        """Each clause's best tool right after the request's best, in the clauses' order (one need, one tool
        near the top), unless its cosine is below `clause_floor` (a clause of preamble fits nothing)."""
        lead_at = int(np.argmax(best))
        lead = best[lead_at]
        tops: list[int] = []
        for row, cos in zip(fused, cosines, strict=True):
            top = int(np.argmax(row))
            if top == lead_at or top in tops:
                continue
            if self._clause_floor is not None and cos[top] < self._clause_floor:
                continue
            tops.append(top)
        if not tops or lead <= 0:
            return best
        out = best.copy()
        level = lead
        for top in tops:
            level = np.nextafter(level, np.float32(0))  # just below the one before: nothing fits between
            out[top] = max(out[top], level)
        return out


class HybridStrategy:
    """BM25 fused with semantic search: the default strategy when the semantic extra is installed."""

    name = "hybrid"

    def __init__(
        self,
        lexical: SearchStrategy | None = None,
        dense: DenseStrategy | None = None,
        *,
        lexical_weight: float = 0.3,
        dense_weight: float = 0.7,
        clause_weight: float = 0.8,
        clause_tops: bool = True,
        clause_floor: float | None = CLAUSE_FLOOR,
    ) -> None:
        if lexical_weight < 0 or dense_weight < 0 or lexical_weight + dense_weight <= 0:
            raise ValueError(f"hybrid weights must be >= 0, not both 0; got {lexical_weight}, {dense_weight}")
        if not 0 <= clause_weight <= 1:
            raise ValueError(f"clause_weight must be between 0 (no clause scoring) and 1; got {clause_weight}")
        self.dense = dense if dense is not None else DenseStrategy()
        self.lexical: SearchStrategy = lexical if lexical is not None else BM25Strategy()
        self.lexical_weight = lexical_weight
        self.dense_weight = dense_weight
        self.clause_weight = clause_weight
        self.clause_tops = clause_tops
        self.clause_floor = clause_floor

    def build(self, docs: Sequence[SearchDoc]) -> HybridScorer:
        return HybridScorer(
            self.lexical.build(docs),
            self.dense.build(docs),
            self.lexical_weight,
            self.dense_weight,
            self.clause_weight,
            self.clause_tops,
            self.clause_floor,
        )
