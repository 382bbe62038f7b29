"""Prerequisite tools: the catalog tool that produces an id a top hit needs and the request does not give.

"Who played the lead in The Dark Knight?" needs `get_movie_credits(movie_id)`, and before it the tool that
finds the movie's id (`search_movie`): no word of the request names that helper. When a top hit requires an
id-like parameter (`person_id`, `playlist_id`, or `id` whose description says what it identifies) and the
request gives no id, the tool of the same namespace that produces one (a search or list tool for that
entity, or one that takes no arguments and names it) is ranked just below the hit.

Producers are found once per catalog from names, descriptions and schemas, so a search pays only for a few
array lookups.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aperture.discovery.document import SearchDoc
from aperture.discovery.strategy import Scores
from aperture.discovery.text import tokenize
from aperture.model import Tool

# Stems of a parameter's last word that make it an id; the words before it name the entity (`person_id`).
_ID_STEMS = frozenset({"id", "ids", "uuid"})
# Words of an id parameter's name that do not name an entity (`get_id`, `search_id`).
_NOT_ENTITIES = frozenset({"get", "search", "list", "creat", "updat", "delet"})
# Stems of the verbs of a tool that hands out ids: "find", "look up" and "query" fold into "search", "show"
# into "list" (`text.VERB_SYNONYMS`).
_SEARCH_STEMS = frozenset({"search", "list"})
# How many of the top hits may bring their producer along: a task names its main step among the first few.
DEPTH = 3
# A request gives an id itself when it says "id" or holds a value that looks like one: a long number (not a
# year or a count), a token of letters and digits, a UUID.
_GIVES_ID = re.compile(r"\b(?:ids?|uuids?|identifiers?)\b|\b\d{5,}\b|\b(?=\w*\d)(?=\w*[A-Za-z])\w{6,}\b", re.IGNORECASE)


def gives_id(request: str) -> bool:
    """Whether `request` carries an id of its own (then no producer is needed)."""
    return _GIVES_ID.search(request) is not None


def _is_id(stems: Sequence[str]) -> bool:
    return bool(stems) and stems[-1] in _ID_STEMS


def _required(tool: Tool) -> list[tuple[str, str]]:
    """`(name, description)` of each required top-level parameter, read straight from the schema (this runs
    for every tool of the catalog on each update: `Tool.parameters()` costs several times more)."""
    schema = tool.input_schema
    required = schema.get("required")
    if not isinstance(required, list) or not required:
        return []
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    out = []
    for name in required:
        prop = properties.get(name)
        description = prop.get("description", "") if isinstance(prop, Mapping) else ""
        out.append((str(name), str(description)))
    return out


def needed_entities(tool: Tool) -> list[str]:
    """The stems of the entities whose ids `tool` requires: `person_id` -> person; a bare `id` described as
    "the Spotify ID of the album" in `get_album` -> album (the description's words that the name also has)."""
    entities: list[str] = []
    name: set[str] | None = None
    for param, description in _required(tool):
        stems = tokenize(param, identifier=True)
        if not _is_id(stems):
            continue
        # `person_id`: the word before "id"; a bare `id`: the first word of its description the name also has.
        words = [s for s in stems[:-1] if s not in _ID_STEMS and s not in _NOT_ENTITIES][-1:]
        if not words:
            name = set(tokenize(tool.name, identifier=True)) if name is None else name
            words = [
                s for s in dict.fromkeys(tokenize(description)) if s in name and s not in _ID_STEMS | _NOT_ENTITIES
            ]
        entities += [w for w in words[:1] if w not in entities]
    return entities


def _requires_id(tool: Tool) -> bool:
    return any(_is_id(tokenize(param, identifier=True)) for param, _ in _required(tool))


@dataclass(frozen=True, slots=True)
class Prerequisites:
    """Per tool position, the positions of the tools that produce the ids it needs (best producer per id)."""

    producers: Mapping[int, tuple[int, ...]]

    @classmethod
    def of(cls, docs: Sequence[SearchDoc]) -> Prerequisites:
        """Find each tool's producers in `docs` (the same namespace only)."""
        # (namespace, stem) -> [(position, score)] of the tools that may produce that entity's ids.
        named: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        generic: dict[str, list[tuple[int, set[str]]]] = defaultdict(list)  # a plain `search` tool
        for position, doc in enumerate(docs):
            tool = doc.tool
            if _requires_id(tool):
                continue
            name = tokenize(tool.name, identifier=True)
            # A search tool finds any one of its kind; a list tool gives a few (`list_playlists`) or is a list
            # of something else (`genre_movie_list`): search ranks first.
            searches = 3 if "search" in name else 2 if "list" in name else 0
            # A tool that takes no arguments and gets something (`get_current_user`) hands out that thing's id;
            # one that takes none and acts (`skip_to_next_track`) does not.
            bare = name[:1] == ["get"] and not _required(tool)
            if not (searches or bare):
                continue
            described = set(doc.fields["description"])
            if searches and all(s in _SEARCH_STEMS for s in name):
                generic[tool.namespace].append((position, described))
                continue
            # What the tool hands out is the last word of its name that is not a verb of searching
            # (`search_person`, `usergroups_users_list`), not any word of it (`get_employee_engagement_score`).
            thing = [s for s in name if s not in _SEARCH_STEMS][-1]
            named[(tool.namespace, thing)].append(
                (position, 2 + searches + (thing in described) + (bare and not searches))
            )
        producers: dict[int, tuple[int, ...]] = {}
        for position, doc in enumerate(docs):
            tool = doc.tool
            found: list[int] = []
            for entity in needed_entities(tool):
                options = [(score, -p, p) for p, score in named.get((tool.namespace, entity), ()) if p != position]
                options += [(4, -p, p) for p, words in generic.get(tool.namespace, ()) if entity in words]
                if options:
                    best = max(options)[2]
                    if best not in found:
                        found.append(best)
            if found:
                producers[position] = tuple(found)
        return cls(producers)

    def expand(
        self, scores: Scores, request: str, allowed: npt.NDArray[np.bool_] | None = None, depth: int = DEPTH
    ) -> Scores:
        """`scores` with each producer of the top `depth` hits ranked just below its hit (a copy; `scores`
        itself when nothing changes). Nothing changes when the request gives an id of its own; a producer
        outside `allowed` (the caller's filters) stays out."""
        if not self.producers or gives_id(request):
            return scores
        top = np.argpartition(-scores, depth - 1)[:depth] if len(scores) > depth else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        out = scores
        for hit in top:
            level = out[hit]
            if level <= 0:
                break
            for producer in self.producers.get(int(hit), ()):
                if out[producer] < level and (allowed is None or allowed[producer]):
                    if out is scores:
                        out = scores.copy()
                    out[producer] = np.nextafter(level, np.float32(0))
        return out
