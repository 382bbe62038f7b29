"""Abstention: how good a search's best match is (`strong`, `weak` or `none`), from signals that mean the same
on any catalog.

Ranking scores cannot say this: hybrid scores are min-max normalised per query (the top is always 1) and BM25
scores grow with the catalog's statistics. The evidence used here is absolute instead:

- with an embedding model: the raw cosine of the query and the top tool's text, plus a quarter of each of two
  word overlaps (the share of the tool's name words found in the query, and the share of its name and
  description words found in the query);
- lexical only: the share of the query's words the tool has anywhere, plus the two overlaps above.

The weights and the two thresholds of each were chosen once, on BFCL (answerable entries against its
irrelevance sets, each entry searched in a catalog of its own functions; see `bench/retrieval.py
--datasets abstention`), and are the defaults for every catalog: nothing is tuned per data set.
"""

from __future__ import annotations

from collections.abc import Collection
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

    def judge(self, evidence: float) -> Confidence:
        if evidence < self.none_below:
            return Confidence.NONE
        return Confidence.STRONG if evidence >= self.strong_from else Confidence.WEAK


# Chosen on BFCL so that about 10% of answerable queries answer `none` (telling an agent to give up on a
# tool that exists is the costlier mistake) and few irrelevant ones answer `strong`.
DENSE_THRESHOLDS = Thresholds(none_below=0.39, strong_from=0.7)
LEXICAL_THRESHOLDS = Thresholds(none_below=0.5, strong_from=1.5)
_OVERLAP_WEIGHT = 0.25


@dataclass(frozen=True, slots=True)
class Overlap:
    """Word overlap of a query and one tool (stemmed words, stop words left out), each share in [0, 1].

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
        words = set(query_tokens)
        if not words:
            return cls(0.0, 0.0, 0.0)
        fields = doc.fields
        name = set(fields["name"])
        described = name | set(fields["description"])
        everything = described.union(fields["parameters"], fields["tags"], fields["namespace"])
        return cls(
            query=len(words & everything) / len(words),
            name=len(words & name) / len(name) if name else 0.0,
            described=len(words & described) / len(described) if described else 0.0,
        )


def evidence(overlap: Overlap, cosine: float | None) -> float:
    """The calibrated score of a best match: dense when a cosine is known, lexical otherwise."""
    if cosine is not None:
        return cosine + _OVERLAP_WEIGHT * (overlap.name + overlap.described)
    return overlap.query + overlap.name + overlap.described


def judge(value: float, *, dense: bool) -> Confidence:
    """The confidence for an `evidence` value, with the default thresholds of its kind."""
    return (DENSE_THRESHOLDS if dense else LEXICAL_THRESHOLDS).judge(value)
