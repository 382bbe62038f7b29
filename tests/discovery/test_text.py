"""Text analysis: words of prose and of identifiers, verb synonyms, the clauses of a request and its quoted
payload."""

from __future__ import annotations

import pytest

from aperture.discovery import BM25Strategy, ToolIndex
from aperture.discovery.text import clause_spans, clauses, tokenize, without_quoted, words_of
from aperture.model import Tool, ToolId


@pytest.mark.parametrize("brand", ["GitHub", "YouTube", "JavaScript", "PostgreSQL", "OpenAI", "iPhone"])
def test_a_brand_in_prose_is_one_word_as_in_a_lowercase_query(brand: str) -> None:
    assert words_of(f"Search {brand} for it") == ["Search", brand, "for", "it"]
    assert tokenize(f"the {brand} API") == tokenize(f"the {brand.lower()} api")
    assert tokenize(brand.lower()) == tokenize(brand) != []


@pytest.mark.parametrize(
    ("identifier", "words"),
    [
        ("getUserById", ["get", "User", "By", "Id"]),
        ("GetUserById", ["Get", "User", "By", "Id"]),
        ("HTTPResponse2", ["HTTP", "Response", "2"]),
        ("get_user_name", ["get", "user", "name"]),
        ("math.factorial", ["math", "factorial"]),
        ("kebab-case", ["kebab", "case"]),
    ],
)
def test_identifiers_split_in_prose_and_in_names_alike(identifier: str, words: list[str]) -> None:
    assert words_of(f"call {identifier} now") == ["call", *words, "now"]
    assert words_of(identifier, identifier=True) == words


def test_every_hump_of_a_name_splits() -> None:
    assert words_of("GitHubSearch", identifier=True) == ["Git", "Hub", "Search"]
    assert words_of("ResearchHelper", identifier=True) == ["Research", "Helper"]
    assert words_of("ResearchHelper") == ["ResearchHelper"]  # one word in prose


def _tool(name: str, description: str) -> Tool:
    return Tool(id=ToolId("t", name), description=description, input_schema={"type": "object"})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("github", "t:repo_search"),
        ("youtube", "t:video_search"),
        ("javascript", "t:run_code"),
        ("postgresql", "t:sql_query"),
        ("get user by id", "t:getUserById"),
        ("user by id", "t:getUserById"),
    ],
)
def test_bm25_finds_brands_named_in_descriptions_and_camelcase_names(query: str, expected: str) -> None:
    index = ToolIndex(BM25Strategy())
    index.update(
        [
            _tool("repo_search", "Search repositories on GitHub."),
            _tool("video_search", "Find videos on YouTube."),
            _tool("run_code", "Run a JavaScript snippet in a sandbox."),
            _tool("sql_query", "Run a read-only query against a PostgreSQL database."),
            _tool("getUserById", "Look up one account."),
            _tool("hub_status", "Status of the hub in the office."),
        ]
    )
    assert index.search(query).hits[0].id == expected


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
    many = "book a flight. rent a car. find a hotel. order some food. call a taxi. pay the bill"
    assert clauses(many) == [
        "book a flight.",
        "rent a car.",
        "find a hotel.",
        "order some food.",
        "call a taxi. pay the bill",
    ]
    assert clauses(many, most=3) == [
        "book a flight.",
        "rent a car.",
        "find a hotel. order some food. call a taxi. pay the bill",
    ]
    assert clauses("") == []


def test_clause_spans_point_into_the_request() -> None:
    text = "Latest news about Tesla, and how it has impacted the market. Get the weather and news in Paris"
    spans = clause_spans(text, most=3)
    assert [text[s:e] for s, e in spans] == [
        "Latest news about Tesla",
        "how it has impacted the market.",
        "Get the weather and news in Paris",  # pieces past the third join it, separator and all
    ]
    assert clauses(text, most=3)[2] == "Get the weather news in Paris"
    assert clause_spans("search the web") == [(0, 14)]
    assert clause_spans("   ") == []


def test_quoted_payload_is_blanked_when_the_task_is_stated_outside_it() -> None:
    text = "Draft an email to Anna with the subject 'Sales Forecast Request' please"
    assert tokenize(without_quoted(text)) == tokenize("Draft an email to Anna with the subject please")
    assert "Forecast" not in without_quoted('Send the note "Sales Forecast Request" to my manager')
    assert "Forecast" not in without_quoted("Send the note \u201cSales Forecast Request\u201d to my manager")
    assert "Forecast" not in without_quoted("Send the note \u2018Sales Forecast Request\u2019 to my manager")
    # An unclosed curly opener is not a quote: only the quote after it goes.
    assert without_quoted("Email Bob \u201cabout the \u201cQ3 numbers\u201d soon") == "Email Bob \u201cabout the   soon"


def test_apostrophes_are_not_quotes() -> None:
    text = "I'd like to know what's the weather in Bob's town, it's 'rainy' they say"
    assert without_quoted(text) == "I'd like to know what's the weather in Bob's town, it's   they say"
    assert without_quoted("I'd like the users' list and the admins' list") == (
        "I'd like the users' list and the admins' list"
    )


def test_typographic_apostrophes_are_not_quotes() -> None:
    text = "I\u2019d like Bob\u2019s report sent with the title \u2018Q3 numbers\u2019 today"
    assert without_quoted(text) == "I\u2019d like Bob\u2019s report sent with the title   today"
    # The closing mark is also the apostrophe: a span that holds one is left alone rather than cut short.
    text = "Email Ana the file \u2018Bob\u2019s notes\u2019 please"
    assert without_quoted(text) == text


def test_runs_of_unclosed_quote_marks_are_answered() -> None:
    # Each opener fails at once (no quote holds its own opening mark), so this is one linear scan.
    for mark in ("'", "\u201c", "\u2018"):
        text = "email the team " + (mark + "x ") * 50_000
        assert without_quoted(text) == text
    # A straight double quote closes itself; one left open does not swallow the rest of the request.
    text = 'email the team "' + "x " * 50_000
    assert without_quoted(text) == text


def test_a_request_that_is_mostly_quotes_stays_whole() -> None:
    for text in ("'weather in Paris' and 'news on Tesla'", 'search "vector databases"', "no quotes here at all"):
        assert without_quoted(text) == text
