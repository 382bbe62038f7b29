"""The exact error texts a model reads, kept as snapshots so a change to them is a visible decision.

Run with APERTURE_UPDATE_SNAPSHOTS=1 to rewrite the files after an intended change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio

SNAPSHOTS = Path(__file__).parent.parent / "snapshots"
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("unknown_tool", "run_tool", {"tool_id": "toolbox:calc", "args": {}}),
    ("malformed_id", "run_tool", {"tool_id": "a:b:c:d", "args": {}}),
    ("bare_name", "run_tool", {"tool_id": "hash_text", "args": {}}),
    ("bare_name_describe", "describe_tool", {"tool_id": "convert_units"}),
    ("invalid_arguments", "run_tool", {"tool_id": "toolbox:convert_units", "args": {"val": 1, "to_unit": "parsec"}}),
    ("args_not_object", "run_tool", {"tool_id": "toolbox:calculate", "args": [1]}),
    ("tool_raised", "run_tool", {"tool_id": "faulty:explode", "args": {"message": "disk full"}}),
    ("timeout", "run_tool", {"tool_id": "faulty:hang", "args": {}}),
    ("empty_query", "search_tools", {"query": ""}),
    ("meta_tool_argument", "search_tools", {"query": "x", "limit": 0, "top_k": 3}),
    ("query_too_long", "search_tools", {"query": "convert units " * 1000}),
    (
        "args_string_too_deep",
        "run_tool",
        {"tool_id": "toolbox:calculate", "args": '{"a":' + "[" * 100 + "]" * 100 + "}"},
    ),
    ("bad_cursor", "list_tools", {"cursor": "abc"}),
]


@pytest.mark.parametrize(("name", "tool", "args"), CASES, ids=[c[0] for c in CASES])
async def test_error_text_matches_snapshot(client: Client, name: str, tool: str, args: dict[str, Any]) -> None:
    result = await client.call_tool(tool, args)
    assert result.is_error
    text = "\n".join(getattr(block, "text", "") for block in result.content) + "\n"
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("APERTURE_UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(text)
    assert text == path.read_text()
