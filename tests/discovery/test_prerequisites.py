"""Prerequisite tools: a top hit that needs an id the request does not give brings the tool that produces it."""

from __future__ import annotations

from typing import Any

import pytest

from aperture.discovery import SearchDoc, ToolIndex
from aperture.discovery.prerequisites import Prerequisites, gives_id, needed_entities
from aperture.model import Tool, ToolId


def make(ns: str, name: str, description: str, required: dict[str, str] | None = None, **optional: str) -> Tool:
    properties: dict[str, Any] = {p: {"type": "string", "description": d} for p, d in (required or {}).items()}
    properties |= {p: {"type": "string", "description": d} for p, d in optional.items()}
    return Tool(
        id=ToolId(ns, name),
        description=description,
        input_schema={"type": "object", "properties": properties, "required": list(required or {})},
    )


MOVIES = [
    make("movies", "get_movie_credits", "Get the cast and crew of a movie.", {"movie_id": "The movie."}),
    make("movies", "get_person_movie_credits", "Get the movies a person played in.", {"person_id": "The person."}),
    make("movies", "search_movie", "Search for movies by title.", {"query": "Words of the title."}),
    make("movies", "search_person", "Search for people by name.", {"query": "A name."}),
    make("movies", "genre_movie_list", "Get the list of official genres for movies."),
    make("movies", "get_popular_people", "Get the people popular today.", page="Which page."),
    make("movies", "rate_movie", "Rate a movie you have seen.", {"movie_id": "The movie.", "value": "1 to 10."}),
]


def ranked(index: ToolIndex, query: str, **options: Any) -> list[str]:
    return [hit.id for hit in index.search(query, **options).hits]


def test_the_producer_of_a_needed_id_ranks_just_below_the_hit() -> None:
    index = ToolIndex()
    index.update(MOVIES)
    ids = ranked(index, "who was in the cast of The Dark Knight")
    assert ids[:2] == ["movies:get_movie_credits", "movies:search_movie"]

    plain = ToolIndex(prerequisites=False)
    plain.update(MOVIES)
    assert "movies:search_movie" not in ranked(plain, "who was in the cast of The Dark Knight")[:2]


def test_a_request_that_gives_the_id_does_not_bring_the_producer() -> None:
    index = ToolIndex()
    index.update(MOVIES)
    assert "movies:search_movie" not in ranked(index, "cast and crew of movie 155093")[:2]
    assert gives_id("movie id abc") and gives_id("track 4iV5W9uYEdYUVa79Axb7Rh") and gives_id("user 10293")
    assert not gives_id("top 5 movies of 2019 with Tom Hanks")


def test_the_producer_is_a_search_tool_of_the_entity_not_a_list_of_something_else() -> None:
    docs = [SearchDoc.of(tool) for tool in MOVIES]
    producers = Prerequisites.of(docs).producers
    names = [tool.key for tool in MOVIES]
    assert [names[p] for p in producers[0]] == ["movies:search_movie"]  # not genre_movie_list
    assert [names[p] for p in producers[1]] == ["movies:search_person"]  # not get_popular_people
    assert 2 not in producers and 3 not in producers  # a search tool needs no id


def test_a_bare_id_takes_its_entity_from_its_description() -> None:
    album = make("music", "get_album", "Get an album.", {"id": "The catalog ID of the album."})
    assert needed_entities(album) == ["album"]
    catalog = [
        album,
        make("music", "search", "Search the catalog for albums, artists and tracks.", {"q": "Words."}),
        make("music", "skip_to_next_album", "Skip playback to the next album."),
    ]
    producers = Prerequisites.of([SearchDoc.of(tool) for tool in catalog]).producers
    assert producers == {0: (1,)}  # a tool that acts without arguments hands out no id


def test_a_tool_naming_the_entity_but_returning_something_else_is_no_producer() -> None:
    catalog = [
        make("hr", "getSalary", "Get an employee's salary.", {"employee_id": "The employee."}),
        make("hr", "getEmployeeEngagementScore", "Get the engagement score of the employees."),
        make("hr", "listEmployees", "List the employees of a department.", department="The department."),
    ]
    producers = Prerequisites.of([SearchDoc.of(tool) for tool in catalog]).producers
    assert producers == {0: (2,)}


def test_producers_come_from_the_hits_namespace_only() -> None:
    catalog = [
        make("films", "get_movie_credits", "Get the cast and crew of a movie.", {"movie_id": "The movie."}),
        make("other", "search_movie", "Search for movies by title.", {"query": "Words of the title."}),
    ]
    assert Prerequisites.of([SearchDoc.of(tool) for tool in catalog]).producers == {}


@pytest.mark.parametrize(
    "options",
    [{"tags": ["credits"]}, {"visible": ("credits only", lambda key: key.endswith("credits"))}],
    ids=["tag-filter", "visibility"],
)
def test_a_producer_the_caller_may_not_see_stays_out(options: dict[str, Any]) -> None:
    catalog = [
        make("movies", "get_movie_credits", "Get the cast and crew of a movie.", {"movie_id": "The movie."}),
        make("movies", "search_movie", "Search for movies by title.", {"query": "Words of the title."}),
    ]
    catalog[0] = Tool(
        id=catalog[0].id, description=catalog[0].description, input_schema=catalog[0].input_schema, tags=("credits",)
    )
    index = ToolIndex()
    index.update(catalog)
    assert ranked(index, "who was in the cast of The Dark Knight", **options) == ["movies:get_movie_credits"]
