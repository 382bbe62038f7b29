"""BM25F: boosted field frequencies added before saturation, one idf per tool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aperture.discovery import BM25Strategy, SearchDoc
from aperture.discovery.bm25 import field_weights
from aperture.model import Tool, ToolId


def doc(name: str, description: str, ns: str = "x") -> SearchDoc:
    return SearchDoc.of(Tool(id=ToolId(ns, name), description=description))


def test_a_word_repeated_across_fields_saturates_instead_of_adding_up() -> None:
    # "report" is in the first tool's name and description; the second matches both query words once.
    docs = [doc("report", "Report a report."), doc("send_mail", "Send a report by mail.")]
    scores = BM25Strategy().build(docs).scores("mail report")
    assert scores[1] > scores[0]


def test_weights_match_the_bm25f_formula() -> None:
    vocab: dict[str, int] = {}
    names = [["alpha"], ["beta"]]
    descriptions = [["alpha", "gamma"], ["gamma"]]
    tokens, docs, weights = field_weights([(names, 4.0, 0.75), (descriptions, 1.0, 0.75)], vocab, 1.2)
    got = {(int(t), int(d)): float(w) for t, d, w in zip(tokens, docs, weights, strict=True)}
    alpha = vocab["alpha"]
    # alpha in tool 0: name (length 1, the average) gives 4.0; description (length 2, average 1.5) 1 / norm
    tf = 4.0 + 1 / (0.25 + 0.75 * 2 / 1.5)
    idf = math.log1p((2 - 1 + 0.5) / (1 + 0.5))
    assert got[(alpha, 0)] == pytest.approx(idf * tf * 2.2 / (tf + 1.2), rel=1e-6)
    # gamma is in both tools: df counts tools, not fields
    gamma = vocab["gamma"]
    assert {d for t, d in got if t == gamma} == {0, 1}


def test_per_field_length_normalisation_and_a_field_boost_of_zero() -> None:
    docs = [doc("a", "word " + "filler " * 20), doc("b", "word")]
    flat = BM25Strategy(b=0.0).build(docs).scores("word")
    assert flat[0] == pytest.approx(flat[1])
    normalised = BM25Strategy(b={"description": 1.0}).build(docs).scores("word")
    assert normalised[1] > normalised[0]
    no_description = BM25Strategy({"name": 1.0, "description": 0.0}).build(docs).scores("word")
    assert np.all(no_description == 0)


@pytest.mark.parametrize("kwargs", [{"k1": -1.0}, {"k1": math.nan}, {"b": 1.5}, {"b": {"name": -0.1}}])
def test_bad_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="k1 >= 0"):
        BM25Strategy(**kwargs)  # type: ignore[arg-type]


def test_an_empty_catalog_or_query_scores_nothing() -> None:
    assert BM25Strategy().build([]).scores("anything").size == 0
    scores = BM25Strategy().build([doc("a", "text")]).scores("the of")
    assert scores.tolist() == [0.0]
