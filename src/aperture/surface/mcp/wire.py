"""What a JSON-RPC message must be before the SDK reads it: not nested too deep, and its id a real id.

Both transports (stdio and HTTP) ask here. A message nested deeper than `MAX_JSON_DEPTH` is refused before
any parser recurses into it. A message whose `id` is an object, an array, a boolean, a fraction or null
would be read by the SDK as a notification (it ignores a key it does not expect) and never answered, so
its sender would wait for ever: it is refused with an error instead (JSON-RPC's -32600, id null).
"""

from __future__ import annotations

from typing import Any

from aperture.model.nesting import too_deep_message

TOO_DEEP = "Invalid request: " + too_deep_message("the message")
"""The error message for a message nested too deep (JSON-RPC code -32600)."""

_JSON_TYPES = {type(None): "null", bool: "a boolean", dict: "an object", list: "an array", float: "a fraction"}


def valid_id(value: Any) -> bool:
    """Whether `value` may be a request id: a string or an integer (MCP allows no null, JSON-RPC no fraction)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def id_problem(message: Any) -> str | None:
    """Why the parsed `message` (or an entry of a batch) carries an `id` that cannot be one, or None."""
    for entry in message if isinstance(message, list) else [message]:
        if isinstance(entry, dict) and "id" in entry and not valid_id(entry["id"]):
            got = _JSON_TYPES.get(type(entry["id"]), type(entry["id"]).__name__)
            return (
                f"Invalid request: id must be a string or an integer, not {got}. Give each request a unique "
                "string or integer id; leave the id out only in notifications, which get no answer."
            )
    return None
