"""Abstention: how good a search's best matches are (`strong`, `weak` or `none`), from signals that mean the
same on any catalog.

Ranking scores cannot say this: hybrid scores are min-max normalised per query (the top is always 1) and BM25
scores grow with the catalog's statistics. The evidence used here is absolute instead:

- with an embedding model: the raw cosine of the query and a tool's text, plus 0.2 x the share of the tool's
  name words found in the query and 0.9 x the share of its name and description words found in it;
- lexical only: the share of the query's words the tool has anywhere, plus the two overlaps above.

`none` (nothing in the catalog fits) is judged on the first `PAGE_HITS` hits together, each part of the evidence
at its best over them (`page_evidence`); `strong` (the first hit fits) on the first hit's own evidence, or when
the request names the tool in its own words (`near_exact`).

The overlaps leave out the words any tool's documentation uses whatever it does (`GENERIC`: "specified",
"given", "based on", "returns", "details", digits, ...): "get the details of the given user" shares
"get", "detail" and "given" with nearly every tool, and counting them made an unrelated tool look half-named.

The weights and the `strong` thresholds were fitted on a random half of BFCL (answerable entries against its
irrelevance sets, each entry searched in a catalog of its own functions; see `bench/retrieval.py
--datasets abstention`), `strong` at the 92.5th percentile of its irrelevant ones. The `none` thresholds are
calibrated on every development set (MetaTool, BFCL, Seal-Tools, RestBench, Gorilla, whose requests are all
answerable, and BFCL's answerable entries): about the lowest of the sets' 9th percentiles of the page evidence
on seeded halves of 1,000-request samples, checked on the other halves, so that no set hears `none` for more
than about 10% of its requests. They are the defaults for every catalog: nothing is tuned per data set. See
docs/search.md for the figures and what else was tried.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aperture.discovery.document import SearchDoc


class Confidence(StrEnum):
    """How well the best match of a search fits the query."""

    STRONG = "strong"  # the top tool is very likely what was asked for
    WEAK = "weak"  # it may fit: read its description before using it
    NONE = "none"  # nothing in the catalog fits: stop searching


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Evidence below `none_below` answers `none`; from `strong_from` on, `strong`; `weak` in between."""

    none_below: float
    strong_from: float

    def judge(self, evidence: float, *, top: float | None = None) -> Confidence:
        """`none` from the page's evidence; `strong` from the first hit's own (`top`, `evidence` when not given)."""
        if evidence < self.none_below:
            return Confidence.NONE
        return Confidence.STRONG if (evidence if top is None else top) >= self.strong_from else Confidence.WEAK


# `none` below about the lowest 9th percentile of the development sets' page evidence (telling an agent to give
# up on a tool that exists is the costlier mistake: at most about 10% of any set's requests); `strong` fitted on
# half of BFCL so that few irrelevant requests hear it. See docs/search.md for the figures.
DENSE_THRESHOLDS = Thresholds(none_below=0.44, strong_from=0.9)
LEXICAL_THRESHOLDS = Thresholds(none_below=0.34, strong_from=1.57)
_NAME_WEIGHT = 0.2
_DESCRIBED_WEIGHT = 0.9

# Stems of words that describe a tool's interface rather than what it does; overlaps leave them out.
# Read off the most common words of BFCL's function descriptions (no labels looked at).
GENERIC = frozenset(
    "api avail base criteria data default detail function get given includ inform list name option particular "
    "provid return s set specif specifi such type valu within".split()
)


@dataclass(frozen=True, slots=True)
class Overlap:
    """Word overlap of a query and one tool (stemmed words; stop words, `GENERIC` words and numbers left out),
    each share in [0, 1].

    Attributes:
        query: the share of the query's words found anywhere in the tool's text.
        name: the share of the tool's name words found in the query.
        described: the share of the tool's name and description words found in the query.
    """

    query: float
    name: float
    described: float

    @classmethod
    def of(cls, query_tokens: Collection[str], doc: SearchDoc) -> Overlap:
        words = _specific(query_tokens)
        if not words:
            return cls(0.0, 0.0, 0.0)
        fields = doc.fields
        name = _specific(fields["name"])
        described = name | _specific(fields["description"])
        everything = described.union(fields["parameters"], fields["tags"], fields["namespace"])
        return cls(
            query=len(words & everything) / len(words),
            name=len(words & name) / len(name) if name else 0.0,
            described=len(words & described) / len(described) if described else 0.0,
        )


def _specific(tokens: Collection[str]) -> set[str]:
    """The tokens that say what a tool does: `GENERIC` words and numbers left out."""
    return {t for t in tokens if t not in GENERIC and not t.isdigit()}


def evidence(overlap: Overlap, cosine: float | None) -> float:
    """The calibrated score of one match: dense when a cosine is known, lexical otherwise."""
    if cosine is not None:
        return cosine + _NAME_WEIGHT * overlap.name + _DESCRIBED_WEIGHT * overlap.described
    return overlap.query + overlap.name + overlap.described


# `none` says nothing in the catalog fits, so it looks past the first hit: the first few hits each add their
# evidence. (An answerable request whose right tool ranks second or third no longer hears `none` because the
# first is wrong; a request with no tool finds nothing better further down.)
PAGE_HITS = 5


def page_evidence(overlaps: Sequence[Overlap], cosines: Sequence[float] | None) -> float:
    """The evidence that one of the first hits fits: each part of `evidence` at its best over them (the best
    cosine and the best word overlaps, not necessarily of the same hit)."""
    if not overlaps:
        return 0.0
    best = Overlap(
        query=max(o.query for o in overlaps),
        name=max(o.name for o in overlaps),
        described=max(o.described for o in overlaps),
    )
    return evidence(best, max(cosines) if cosines else None)


# A near-exact match needs at least this cosine too, so that a request made of a tool's words in another sense
# ("calculate the odds" against `calculate`, read as arithmetic) is not called strong on words alone.
NEAR_EXACT_COSINE = 0.4
# ... and at least this share of the tool's name: "convert kilometres to miles" names `convert_units` by its
# verb, and its units by their abbreviations in the tool's parameters.
NEAR_EXACT_NAME = 0.5
_ABBREVIATED = 2


def near_exact(query_tokens: Collection[str], doc: SearchDoc, overlap: Overlap, cosine: float | None) -> bool:
    """Whether a request names a tool in its own words: every specific word of the request is in the tool's
    text, spelt out or abbreviated ("km" for kilometres), at least half the words of the tool's name are in the
    request ("calculate 2+2" for `calculate`, "convert kilometres to miles" for `convert_units`), and the cosine
    is at least `NEAR_EXACT_COSINE` when embeddings are there. Such a match is `strong` whatever the evidence (a
    long description lowers the share of its words a short request can name)."""
    if overlap.name < NEAR_EXACT_NAME or (cosine is not None and cosine < NEAR_EXACT_COSINE):
        return False
    return overlap.query >= 1.0 or _all_found(query_tokens, doc, overlap)


def _all_found(query_tokens: Collection[str], doc: SearchDoc, overlap: Overlap) -> bool:
    """Whether every specific word of the query is in the tool's text, or abbreviates or is abbreviated by one of
    its words. Asked only when the exact words fall short, and only when at most `_ABBREVIATED` words do (a
    request that names a tool spells out one or two of its abbreviations, not more)."""
    words = _specific(query_tokens)
    if not words or len(words) - round(overlap.query * len(words)) > _ABBREVIATED:
        return False
    fields = doc.fields
    text = set().union(*(fields[f] for f in ("name", "description", "parameters", "tags", "namespace")))
    missing = words - text
    short = [t for t in text if len(t) <= 4]  # an abbreviation is short, one side or the other
    for word in missing:
        candidates = text if len(word) <= 4 else short
        if not any(_abbreviates(word, t) or _abbreviates(t, word) for t in candidates if t[:1] == word[:1]):
            return False
    return True


def _abbreviates(short: str, word: str) -> bool:
    """Whether `short` (2-4 letters) abbreviates `word`: the same first letter, and its letters in order in the
    longer word ("km" kilometr, "mi" mile, "msg" messag, "repo" repositori)."""
    if not 2 <= len(short) <= 4 or len(word) <= len(short) or short[0] != word[0] or not short.isalpha():
        return False
    rest = iter(word[1:])
    return all(letter in rest for letter in short[1:])


def judge(value: float, *, dense: bool, top: float | None = None) -> Confidence:
    """The confidence for a page's `value` (`page_evidence`), with the default thresholds of its kind; `strong`
    is judged on the first hit's own evidence, `top` (`value` when not given)."""
    return (DENSE_THRESHOLDS if dense else LEXICAL_THRESHOLDS).judge(value, top=top)
