"""A Tool in MCP, OpenAI and Anthropic shapes; docs at detail levels."""

from __future__ import annotations

import pytest

from aperture.model import (
    DetailLevel,
    Tool,
    ToolAnnotations,
    ToolExample,
    ToolId,
    describe,
    to_anthropic,
    to_mcp,
    to_openai,
)
from aperture.model.tool import short_description

TOOL = Tool(
    id=ToolId("files.v2", "read-file"),
    description="Read a file. Returns its text.",
    input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    output_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    tags=("fs",),
    annotations=ToolAnnotations(read_only=True),
    examples=(ToolExample(description="README", args={"path": "README.md"}),),
)


def test_mcp_shape() -> None:
    listed = to_mcp(TOOL)
    wire = listed.model_dump(by_alias=True, exclude_none=True)
    assert wire["name"] == "read-file"
    assert wire["inputSchema"]["required"] == ["path"]
    assert wire["outputSchema"]["properties"]["text"]["type"] == "string"
    assert wire["annotations"] == {"readOnlyHint": True}
    assert to_mcp(TOOL, name="files__read").name == "files__read"


def test_openai_and_anthropic_shapes_use_valid_function_names() -> None:
    openai = to_openai(TOOL)
    assert openai["type"] == "function"
    assert openai["function"]["name"] == "files_v2__read-file"
    assert openai["function"]["parameters"]["properties"]["path"] == {"type": "string"}
    anthropic = to_anthropic(TOOL)
    assert anthropic == {
        "name": "files_v2__read-file",
        "description": TOOL.description,
        "input_schema": dict(TOOL.input_schema),
    }


def test_detail_levels_add_information() -> None:
    summary = describe(TOOL, DetailLevel.SUMMARY)
    schema = describe(TOOL, DetailLevel.SCHEMA)
    full = describe(TOOL, DetailLevel.FULL)
    assert summary["parameters"] == ["path"] and "input_schema" not in summary
    assert schema["input_schema"] == TOOL.input_schema and "examples" not in schema
    assert full["examples"] == [{"description": "README", "args": {"path": "README.md"}}]
    assert describe(TOOL, DetailLevel.FULL, examples_max=0)["examples"] == []


def test_short_description_is_the_first_sentence() -> None:
    assert short_description("Read a file. Returns its text.") == "Read a file."
    assert short_description("First paragraph\nstill first.\n\nSecond.") == "First paragraph still first."
    assert len(short_description("word " * 100)) <= 160


@pytest.mark.parametrize(
    ("text", "first"),
    [
        (
            "Hash text with a hash function, e.g. sha256 or md5. Returns hex.",
            "Hash text with a hash function, e.g. sha256 or md5.",
        ),
        ("Pick the newest, i.e. the last one. Then stop.", "Pick the newest, i.e. the last one."),
        ("Reads files, logs, etc. and more. Next.", "Reads files, logs, etc. and more."),
        ("Reads files, logs, etc. Then it stops.", "Reads files, logs, etc."),
        ("Version v1.2 is 3.5 times faster. Then more.", "Version v1.2 is 3.5 times faster."),
        ("Written by J. Smith and Dr. Who. Next.", "Written by J. Smith and Dr. Who."),
        ("Compare a vs. b (cf. the docs). Next.", "Compare a vs. b (cf. the docs)."),
    ],
    ids=["e.g.", "i.e.", "etc.-lowercase", "etc.-sentence-end", "decimals", "initials-and-titles", "vs.-cf."],
)
def test_abbreviations_do_not_end_the_first_sentence(text: str, first: str) -> None:
    assert short_description(text) == first
