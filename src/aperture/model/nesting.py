"""How deep JSON may nest, checked by a scan that does not recurse, before anything parses the text.

Python's `json` module, and much code that walks parsed values, recurses once per level: a line of
100,000 `[` ends in `RecursionError`, which escapes the `except ValueError` around a parse. Every JSON
text the gateway reads from outside (a client's message, arguments given as a JSON string, an upstream's
answer) is checked here first and refused past `MAX_JSON_DEPTH` levels of objects and arrays.
"""

from __future__ import annotations

import json
import re

import numpy as np
import numpy.typing as npt

MAX_JSON_DEPTH = 64
"""Most levels of nested objects and arrays in one JSON text (a message's envelope counts: a tool call's
arguments sit 3 levels down). Deep enough for any real tool's data, shallow enough that code recursing
over a parsed value stays far from Python's recursion limit."""

_CHUNK = 1 << 20  # bytes scanned at a time: the temporary arrays stay small whatever the text's size
_OPEN_CLOSE = np.zeros(256, dtype=np.int8)
_OPEN_CLOSE[[ord("["), ord("{")]] = 1
_OPEN_CLOSE[[ord("]"), ord("}")]] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_NOT_BACKSLASH = re.compile(rb"[^\\]")

_STRING = r'"(?:[^"\\]|\\.)*+"'
_ID_VALUE = rf"(-?\d++(?![.eE])|{_STRING})"
# The id among the top-level keys, before any nested value (`{"jsonrpc": "2.0", "id": 7, ...`) or as the
# last key of the top-level object (`..., "id": 7}`): either way certainly the message's own id.
_LEADING_ID = re.compile(rf'\s*\{{\s*(?:"(?:jsonrpc|method)"\s*:\s*{_STRING}\s*,\s*)*+"id"\s*:\s*{_ID_VALUE}'.encode())
_TRAILING_ID = re.compile(rf',\s*"id"\s*:\s*{_ID_VALUE}\s*\}}\s*\Z'.encode())


def json_too_deep(text: bytes | bytearray | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `text` nests objects and arrays more than `limit` levels deep (brackets in strings do not count).

    Linear in the length of `text` and never recursive; a text with at most `limit` opening brackets is
    answered by counting alone. `text` need not be valid JSON: whatever it is, a parser given a text this
    says is not too deep nests at most `limit` levels.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    data = np.frombuffer(raw, dtype=np.uint8)
    depth = quotes_before = 0
    start = 0
    while start < len(data):
        end = min(start + _CHUNK, len(data))
        if data[end - 1] == _BACKSLASH:  # keep a run of backslashes with the character after it
            after = _NOT_BACKSLASH.search(raw, end)
            end = after.end() if after else len(data)
        chunk = data[start:end]
        quotes = np.flatnonzero(chunk == _QUOTE)
        escaped = _escaped(chunk)
        if escaped.size:
            quotes = quotes[~np.isin(quotes, escaped)]
        steps = _OPEN_CLOSE[chunk]
        brackets = np.flatnonzero(steps)
        if brackets.size:
            outside = (np.searchsorted(quotes, brackets) + quotes_before) % 2 == 0
            levels = np.cumsum(np.where(outside, steps[brackets], 0), dtype=np.int64) + depth
            if int(levels.max()) > limit:
                return True
            depth = int(levels[-1])
        quotes_before += quotes.size
        start = end
    return False


def _escaped(chunk: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """Positions in `chunk` of the characters a backslash escapes (after a run of odd length)."""
    slashes = np.flatnonzero(chunk == _BACKSLASH)
    if not slashes.size:
        return slashes
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    firsts = slashes[np.concatenate(([0], breaks + 1))]
    lasts = slashes[np.concatenate((breaks, [slashes.size - 1]))]
    odd = (lasts - firsts) % 2 == 0
    escaped: npt.NDArray[np.intp] = lasts[odd] + 1
    return escaped


def leading_id(text: bytes | bytearray) -> str | int | None:
    """The id of the JSON-RPC message in `text`, found without parsing it, or None when it cannot be told.

    For answering (or matching an answer to) a message too deep to parse: the id is found when it is among
    the top-level keys before any nested value, or the last of them, as JSON-RPC libraries write it.
    """
    found = _LEADING_ID.match(text) or _TRAILING_ID.search(text[-4096:])
    if found is None:
        return None
    value = json.loads(found.group(1))
    return value if isinstance(value, str | int) else None


def too_deep_message(what: str, limit: int = MAX_JSON_DEPTH) -> str:
    """The explanation for a refused text: `what` names it ('the request', 'the JSON string in args')."""
    return (
        f"{what} nests objects and arrays more than {limit} levels deep, the most the gateway reads. "
        "Send flatter data (for example a nested structure as a list of records, or as a string)."
    )
