"""Cursors: plain `version.offset.scope` strings, refused with a reason when replayed on another query, by
another caller, or after the catalog changed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aperture.model import InvalidCursorError

MAX_CURSOR = 512
"""The longest cursor read at all (ours are under 30 characters)."""


def scope(*parts: Any) -> str:
    """A short fingerprint of a query and its filters, so a cursor cannot be replayed on another query."""
    return hashlib.sha256(json.dumps(parts, default=_canonical).encode()).hexdigest()[:8]


def rights(visible: tuple[Any, Any] | None) -> Any:
    """What the caller's rights are (None when everything is visible): part of a cursor's scope, since pages
    differ between callers who see different tools (other rules, another toolset)."""
    return None if visible is None else visible[0]


def issue(version: int, offset: int, of_scope: str) -> str:
    # Plain `version.offset.scope`: nothing in it is secret, and an agent pays for every character.
    return f"{version}.{offset}.{of_scope}"


def offset_of(cursor: str | None, of_scope: str, version: int, op: str) -> int:
    """Where the page of `cursor` starts (0 without one).

    Raises:
        InvalidCursorError: a cursor not issued here, for another query or caller, or of an older catalog.
    """
    if not cursor:
        return 0
    try:
        if len(cursor) > MAX_CURSOR:  # a long one is never decoded
            raise ValueError("too long")
        raw_version, raw_offset, cursor_scope = cursor.split(".")
        if not (raw_version.isascii() and raw_version.isdigit() and raw_offset.isascii() and raw_offset.isdigit()):
            raise ValueError("not a cursor")
        cursor_version, offset = int(raw_version), int(raw_offset)
    except ValueError:
        raise InvalidCursorError(
            "The cursor is not one this server issued. Pass the nextCursor value exactly as received, or omit it.",
            op=op,
        ) from None
    if cursor_scope != of_scope:
        raise InvalidCursorError(
            "The cursor belongs to a different query or filter. Repeat the same call it came from, or omit it.",
            op=op,
        )
    if cursor_version != version:
        raise InvalidCursorError(
            "The tool catalog changed since this cursor was issued, so its pages no longer line up. "
            "Run the call again without a cursor.",
            op=op,
            retryable=True,
        )
    return max(0, offset)


def _canonical(value: Any) -> Any:
    """Sets in a stable order (a frozenset's own order changes between processes), anything else as text."""
    return sorted(value, key=str) if isinstance(value, set | frozenset) else str(value)
