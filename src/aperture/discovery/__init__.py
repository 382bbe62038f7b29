"""Discovery: the tool index and its search strategies (lexical, BM25 with field boosts)."""

from aperture.discovery.bm25 import BM25Scorer, BM25Strategy
from aperture.discovery.document import FIELDS, SearchDoc
from aperture.discovery.index import SearchPage, ToolIndex
from aperture.discovery.lexical import LexicalScorer, LexicalStrategy
from aperture.discovery.strategy import DEFAULT_BOOSTS, Scorer, SearchStrategy
from aperture.discovery.text import split_identifier, tokenize

__all__ = [
    "DEFAULT_BOOSTS",
    "FIELDS",
    "BM25Scorer",
    "BM25Strategy",
    "LexicalScorer",
    "LexicalStrategy",
    "Scorer",
    "SearchDoc",
    "SearchPage",
    "SearchStrategy",
    "ToolIndex",
    "split_identifier",
    "strategy_named",
    "tokenize",
]


def strategy_named(name: str) -> SearchStrategy:
    """The strategy for a configuration name (`bm25`, `lexical`)."""
    strategies: dict[str, type[BM25Strategy] | type[LexicalStrategy]] = {
        "bm25": BM25Strategy,
        "lexical": LexicalStrategy,
    }
    try:
        return strategies[name]()
    except KeyError:
        raise ValueError(f"unknown search strategy '{name}'; choose one of: {', '.join(strategies)}") from None
