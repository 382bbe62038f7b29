"""Discovery: the tool index and its search strategies (lexical, BM25 with field boosts, semantic, hybrid).

The semantic and hybrid strategies need the optional `semantic` extra; their modules import without it,
and `default_strategy()` (the `auto` strategy) falls back to BM25 when it is missing.
"""

from pathlib import Path

from aperture.discovery.bm25 import BM25Scorer, BM25Strategy
from aperture.discovery.confidence import (
    DENSE_THRESHOLDS,
    LEXICAL_THRESHOLDS,
    Confidence,
    Overlap,
    Thresholds,
    evidence,
    judge,
)
from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.embedding import (
    Embedder,
    EmbeddingCache,
    EmbeddingModelError,
    MiniLMEmbedder,
    SemanticUnavailableError,
    default_cache_dir,
    semantic_available,
)
from aperture.discovery.evaluation import EvalDataError, EvalQuery, Ranking, RetrievalReport
from aperture.discovery.index import INTENT_WEIGHT, MAX_INTENT, MAX_QUERY, SearchPage, ToolIndex
from aperture.discovery.lexical import LexicalScorer, LexicalStrategy
from aperture.discovery.prerequisites import Prerequisites
from aperture.discovery.semantic import DenseScorer, DenseStrategy, HybridScorer, HybridStrategy, tool_text
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scorer, SearchStrategy
from aperture.discovery.text import split_identifier, tokenize

__all__ = [
    "DEFAULT_BOOSTS",
    "DENSE_THRESHOLDS",
    "FIELDS",
    "INTENT_WEIGHT",
    "LEXICAL_THRESHOLDS",
    "MAX_INTENT",
    "MAX_QUERY",
    "STRATEGIES",
    "BM25Scorer",
    "BM25Strategy",
    "Confidence",
    "DenseScorer",
    "DenseStrategy",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingModelError",
    "EvalDataError",
    "EvalQuery",
    "HybridScorer",
    "HybridStrategy",
    "LexicalScorer",
    "LexicalStrategy",
    "MiniLMEmbedder",
    "Overlap",
    "Prerequisites",
    "Ranking",
    "RetrievalReport",
    "Scorer",
    "SearchDoc",
    "SearchPage",
    "SearchStrategy",
    "SemanticUnavailableError",
    "Thresholds",
    "ToolIndex",
    "default_cache_dir",
    "default_strategy",
    "evidence",
    "judge",
    "resolve_strategy",
    "semantic_available",
    "split_identifier",
    "strategy_named",
    "tokenize",
    "tool_text",
]

# Every strategy name a configuration may give; `auto` picks hybrid or bm25 by what is installed.
STRATEGIES = ("auto", "hybrid", "semantic", "bm25", "lexical")


def resolve_strategy(name: str) -> str:
    """The concrete strategy for a configuration name: `auto` becomes `hybrid` when the semantic extra is
    installed, else `bm25`; other names are returned as they are."""
    if name == "auto":
        return "hybrid" if semantic_available() else "bm25"
    return name


def strategy_named(name: str, *, cache_dir: Path | str | None = None) -> SearchStrategy:
    """The strategy for a configuration name (see `STRATEGIES`).

    `hybrid` and `semantic` need the semantic extra and raise `SemanticUnavailableError` (which says what
    to install) without it; their embeddings are cached in `cache_dir` (default: the user cache directory).

    Raises:
        ValueError: for a name that is not a strategy, listing the names there are.
    """
    name = resolve_strategy(name)
    if name == "bm25":
        return BM25Strategy()
    if name == "lexical":
        return LexicalStrategy()
    if name in ("hybrid", "semantic"):
        dense = DenseStrategy(cache=EmbeddingCache(cache_dir) if cache_dir is not None else None)
        return HybridStrategy(dense=dense) if name == "hybrid" else dense
    raise ValueError(f"unknown search strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")


def default_strategy() -> SearchStrategy:
    """Hybrid (BM25 fused with semantic search) when the semantic extra is installed, else BM25."""
    return strategy_named("auto")
