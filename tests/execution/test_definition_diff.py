"""The difference between two tool definitions, field by field and word by word."""

from __future__ import annotations

from aperture.execution import FieldDiff
from aperture.execution.definition_diff import definition_diff, text_diff, whole_definition


def plain(before: str, after: str) -> str:
    return FieldDiff("f", text_diff(before, after)).plain()


def test_a_changed_word_is_marked_alone_in_its_line() -> None:
    before = "Echo the text. It never reads local files. Answers fast."
    after = "Echo the text. It always reads local files. Answers fast."
    assert plain(before, after) == "Echo the text. It [-never-]{+always+} reads local files. Answers fast."


def test_changes_split_only_by_spaces_read_as_one_phrase() -> None:
    assert plain("keep it safe small", "keep it open large") == "keep it [-safe small-]{+open large+}"
    assert (
        plain("keep it safe and small", "keep it open and large") == "keep it [-safe-]{+open+} and [-small-]{+large+}"
    )


def test_unchanged_lines_far_from_a_change_are_counted_not_shown() -> None:
    before = "\n".join(f"line {n}" for n in range(20))
    after = before.replace("line 10", "line ten")
    assert plain(before, after).splitlines() == [
        "… 7 unchanged lines",
        "line 7",
        "line 8",
        "line 9",
        "line [-10-]{+ten+}",
        "line 11",
        "line 12",
        "line 13",
        "… 6 unchanged lines",
    ]


def test_fields_that_differ_are_compared_as_sorted_json_and_lines_added_are_marked_after_their_indent() -> None:
    approved = {"name": "echo", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
    current = {"name": "echo", "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}}}
    [change] = definition_diff(approved, current)
    assert change.field == "input_schema"
    assert change.plain().splitlines() == [
        "{",
        '  "properties": {',
        '    "a": {',
        '      "type": "[-string-]{+integer+}"',
        "    }{+,+}",
        '    {+"b": {}+}',
        "  },",
        '  "type": "object"',
        "}",
    ]


def test_a_new_tool_is_its_whole_definition_unmarked() -> None:
    fields = whole_definition({"name": "echo", "title": None, "description": "Say it\nback.", "annotations": {}})
    assert [(f.field, f.plain()) for f in fields] == [("name", "echo"), ("description", "Say it\nback.")]
