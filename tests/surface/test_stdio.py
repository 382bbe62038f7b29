"""What the stdio transport answers to lines that are not valid JSON-RPC, and how it splits its input."""

from __future__ import annotations

import json

import mcp_types
import pydantic
import pytest

from aperture.surface.mcp import stdio
from aperture.surface.mcp.stdio import _Lines, error_line, reject


def rejection(line: str) -> dict[str, object] | None:
    with pytest.raises(pydantic.ValidationError) as caught:
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    answer = reject(line, caught.value)
    return None if answer is None else json.loads(answer)


def test_unparseable_line_gets_a_parse_error_with_null_id() -> None:
    answer = rejection("{nope")
    assert answer is not None and answer["id"] is None
    assert answer["error"]["code"] == -32700  # type: ignore[index]


def test_invalid_request_keeps_its_id() -> None:
    answer = rejection(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "x"}))
    assert answer is not None and answer["id"] == 7
    error = answer["error"]
    assert error["code"] == -32600 and "params" in error["message"] and "result" not in error["message"]  # type: ignore[index]


def test_broken_notifications_get_no_answer() -> None:
    assert rejection(json.dumps({"jsonrpc": "2.0", "method": "notifications/x", "params": 5})) is None


def test_error_line_never_echoes_an_invalid_id() -> None:
    assert json.loads(error_line({"bad": "id"}, -32600, "m"))["id"] is None
    assert json.loads(error_line(True, -32600, "m"))["id"] is None
    assert json.loads(error_line("abc", -32600, "m"))["id"] == "abc"


def test_lines_are_split_across_chunks() -> None:
    lines = _Lines()
    assert lines.feed(b'{"a":') == []
    assert lines.feed(b' 1}\n{"b": 2}\n{"c"') == [b'{"a": 1}', b'{"b": 2}']
    assert lines.feed(b": 3}\n") == [b'{"c": 3}']
    assert not lines.overflowed


def test_a_line_over_the_limit_is_dropped_up_to_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "MAX_MESSAGE_BYTES", 10)
    lines = _Lines()
    assert lines.feed(b"x" * 6) == [] and not lines.overflowed
    assert lines.feed(b"x" * 6) == [] and lines.overflowed  # said once...
    assert lines.feed(b"x" * 6) == [] and not lines.overflowed  # ...and the rest is skipped quietly
    assert lines.feed(b'xxx\n{"ok": 1}\n') == [b'{"ok": 1}']  # the next message is read as usual
