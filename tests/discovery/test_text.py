"""Text analysis: verb synonyms and the clauses of a request."""

from __future__ import annotations

from aperture.discovery.text import clauses, tokenize


def test_common_verbs_meet_on_one_stem_on_both_sides() -> None:
    assert tokenize("fetch retrieve obtain get") == ["get"] * 4
    assert tokenize("remove erase delete") == ["delet"] * 3
    assert tokenize("Find tools, query them") == ["search", "tool", "search"]
    assert tokenize("getInvoice") == tokenize("fetch invoices")
    assert tokenize("the show", keep_stop_words=True) == ["the", "list"]


def test_a_request_splits_into_sentences_and_and_clauses() -> None:
    assert clauses("Latest news about Tesla and how it has impacted the stock market.") == [
        "Latest news about Tesla",
        "how it has impacted the stock market.",
    ]
    assert clauses("Book a flight to Paris. Find a hotel near the Louvre") == [
        "Book a flight to Paris.",
        "Find a hotel near the Louvre",
    ]


def test_short_parts_stay_with_their_neighbours_and_parts_are_capped() -> None:
    assert clauses("news and weather") == ["news weather"]
    assert clauses("search the web") == ["search the web"]
    many = "book a flight. rent a car. find a hotel. order some food"
    assert clauses(many) == ["book a flight.", "rent a car.", "find a hotel. order some food"]
    assert clauses("") == []
