"""Text analysis for search: identifier splitting, lower-casing, stop words and stemming."""

from __future__ import annotations

import re
from collections.abc import Iterable

import Stemmer

# camelCase / PascalCase / acronym boundaries and letter-digit boundaries: getHTTPResponse2 -> get HTTP Response 2
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
# The same split in one pass: an acronym before a capitalised word, a (capitalised) word, an acronym, digits.
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
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
# word as written -> stem, or "" for a stop word; grows with the vocabulary, which is small next to the text.
_STEMS: dict[str, str] = dict.fromkeys(STOP_WORDS, "")


def split_identifier(text: str) -> str:
    """`getUserName`, `get_user_name` and `get-user.name` all become `get User Name`-like word runs."""
    return _CAMEL.sub(" ", text)


def _stem(word: str) -> str:
    lower = word.lower()
    stem = _STEMS[word] = _STEMS[lower] if lower in _STEMS else str(_stemmer.stemWord(lower))
    return stem


def tokenize(text: str, *, keep_stop_words: bool = False) -> list[str]:
    """Words of `text`, identifiers split, lower-cased, stop words dropped, stemmed."""
    words = _WORDS.findall(text)
    if keep_stop_words:
        return [str(_stemmer.stemWord(w.lower())) for w in words]
    stems = _STEMS
    out = []
    for word in words:
        stem = stems.get(word)
        if stem is None:
            stem = _stem(word)
        if stem:
            out.append(stem)
    return out


def tokenize_all(parts: Iterable[str]) -> list[str]:
    """Tokens of several texts, concatenated."""
    return tokenize(" ".join(parts))
