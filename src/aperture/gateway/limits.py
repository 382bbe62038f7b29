"""What the meta-tools read whole is bounded before anything reads it: free text, tags, page sizes."""

from __future__ import annotations

from collections.abc import Sequence

from aperture.discovery import MAX_INTENT, MAX_QUERY
from aperture.model import InvalidRequestError

MAX_LIMIT = 100
MAX_TAGS = 20
MAX_NAME = 128  # a namespace (a backend name) or a tag, in characters


def check_search_text(query: str, intent: str | None, namespace: str | None, tags: Sequence[str]) -> None:
    """Refuse free text no search should read whole (a 2 MB query held the event loop for 0.4 s)."""
    problem = None
    if len(query) > MAX_QUERY:
        problem = (
            f"The query is {len(query)} characters long; search takes a few words about the task (at most "
            f"{MAX_QUERY} characters), for example 'convert units'. Put the gist in query, and one sentence "
            "of context in intent if it helps."
        )
    elif intent is not None and len(intent) > MAX_INTENT:
        problem = f"intent is {len(intent)} characters long; keep it to one sentence (at most {MAX_INTENT})."
    elif namespace is not None and len(namespace) > MAX_NAME:
        problem = (
            f"namespace is {len(namespace)} characters long; namespaces have at most {MAX_NAME} "
            "(list_namespaces shows them)."
        )
    elif len(tags) > MAX_TAGS:
        problem = f"tags lists {len(tags)} tags; give at most {MAX_TAGS} (a tool must have every one of them)."
    elif any(len(tag) > MAX_NAME for tag in tags):
        problem = f"A tag is over {MAX_NAME} characters long; tags are short labels such as 'git' or 'files'."
    if problem is not None:
        raise InvalidRequestError(problem, op="search_tools")


def check_limit(limit: int, op: str) -> int:
    """`limit` if it is within 1 to `MAX_LIMIT`.

    Raises:
        InvalidRequestError: naming the range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIMIT}; got {limit}.", op=op)
    return limit
