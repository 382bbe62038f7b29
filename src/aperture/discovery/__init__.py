"""Discovery: the tool index and its search strategies (lexical, BM25 with field boosts, semantic, hybrid).

The semantic and hybrid strategies need the optional `semantic` extra; their modules import without it,
and `default_strategy()` falls back to BM25 when it is missing.
"""

from aperture.discovery.bm25 import BM25Scorer, BM25Strategy
from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.embedding import (
    Embedder,
    EmbeddingCache,
    EmbeddingModelError,
    MiniLMEmbedder,
    SemanticUnavailableError,
    semantic_available,
)
from aperture.discovery.evaluation import EvalDataError, EvalQuery, Ranking, RetrievalReport
from aperture.discovery.index import SearchPage, ToolIndex
from aperture.discovery.lexical import LexicalScorer, LexicalStrategy
from aperture.discovery.semantic import DenseScorer, DenseStrategy, HybridScorer, HybridStrategy, tool_text
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scorer, SearchStrategy
from aperture.discovery.text import split_identifier, tokenize

__all__ = [
    "DEFAULT_BOOSTS",
    "FIELDS",
    "BM25Scorer",
    "BM25Strategy",
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
    "Ranking",
    "RetrievalReport",
    "Scorer",
    "SearchDoc",
    "SearchPage",
    "SearchStrategy",
    "SemanticUnavailableError",
    "ToolIndex",
    "default_strategy",
    "semantic_available",
    "split_identifier",
    "strategy_named",
    "tokenize",
    "tool_text",
]

_STRATEGIES = ("bm25", "lexical", "semantic", "hybrid")


def strategy_named(name: str) -> SearchStrategy:
    """The strategy for a configuration name: `bm25`, `lexical`, `hybrid` or `semantic` (the last two need
    the semantic extra and raise `SemanticUnavailableError` without it)."""
    if name == "bm25":
        return BM25Strategy()
    if name == "lexical":
        return LexicalStrategy()
    if name == "hybrid":
        return HybridStrategy()
    if name == "semantic":
        return DenseStrategy()
    raise ValueError(f"unknown search strategy '{name}'; choose one of: {', '.join(_STRATEGIES)}")


def default_strategy() -> SearchStrategy:
    """Hybrid (BM25 fused with semantic search) when the semantic extra is installed, else BM25."""
    return HybridStrategy() if semantic_available() else BM25Strategy()
