"""Text analysis for search: identifier splitting, lower-casing, stop words and stemming."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import Stemmer

# camelCase / PascalCase / acronym boundaries and letter-digit boundaries: getHTTPResponse2 -> get HTTP Response 2
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "should",
        "so",
        "some",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "those",
        "to",
        "use",
        "used",
        "using",
        "want",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)

_stemmer = Stemmer.Stemmer("english")


def split_identifier(text: str) -> str:
    """`getUserName`, `get_user_name` and `get-user.name` all become `get User Name`-like word runs."""
    return _CAMEL.sub(" ", text)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_stemmer.stemWord(word))


def tokenize(text: str, *, keep_stop_words: bool = False) -> list[str]:
    """Words of `text`, identifiers split, lower-cased, stop words dropped, stemmed."""
    words = _WORD.findall(split_identifier(text).lower())
    return [_stem(w) for w in words if keep_stop_words or w not in STOP_WORDS]


def tokenize_all(parts: Iterable[str]) -> list[str]:
    """Tokens of several texts, concatenated."""
    out: list[str] = []
    for part in parts:
        out += tokenize(part)
    return out
