"""Upstream messages nested too deep to read: the request they answer gets an error, the connection goes on.

An upstream's answer is checked (`json_too_deep`, a scan that never recurses) before anything parses it.
One nested past `MAX_JSON_DEPTH` levels is never parsed: in its place the request it answers gets a
JSON-RPC error saying why, so that one call fails with a tool error while the upstream connection, and
every other call on it, goes on. (Parsed, 1,000 levels raise `RecursionError` in the reader, which ended
the connection for every caller.)
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types

from aperture.model.nesting import MAX_JSON_DEPTH, json_too_deep, leading_id

logger = logging.getLogger(__name__)

TOO_DEEP = (
    f"the upstream's answer nests objects and arrays more than {MAX_JSON_DEPTH} levels deep, the most the gateway "
    "reads, so it was dropped. Ask for less deeply nested data, or have the tool's author flatten its results."
)


def too_deep_answer(text: bytes | bytearray, fallback_id: Any = None) -> dict[str, Any] | None:
    """The error response standing in for `text` when it is nested too deep, else None.

    It answers the id found in `text`, else `fallback_id` (the request whose HTTP response carried it);
    with neither, it answers nothing (id null), and the caller drops it.
    """
    if not json_too_deep(text):
        return None
    found = leading_id(text)
    found = fallback_id if found is None else found
    logger.warning("an upstream answer nested over %d levels was dropped (id %r)", MAX_JSON_DEPTH, found)
    return {"jsonrpc": "2.0", "id": found, "error": {"code": mcp_types.INTERNAL_ERROR, "message": TOO_DEEP}}


def loads_upstream(text: bytes | str, fallback_id: Any = None) -> Any:
    """`json.loads(text)`, or the error response of `too_deep_answer` in its place.

    Raises:
        ValueError: `text` is not JSON.
    """
    raw = text.encode() if isinstance(text, str) else text
    answer = too_deep_answer(raw, fallback_id)
    return answer if answer is not None else json.loads(raw)
