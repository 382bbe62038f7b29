"""Tool ids: parse, format, validate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aperture.model import InvalidToolIdError, ToolId

PART = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=128)


def test_parse_and_format_round_trip() -> None:
    assert ToolId.parse("github:create_issue") == ToolId("github", "create_issue")
    assert str(ToolId.parse("ns:tool.v2:1.0")) == "ns:tool.v2:1.0"
    assert ToolId.parse("ns:tool:1.0").key == "ns:tool"


@given(PART, PART, st.none() | PART)
def test_any_valid_id_round_trips(namespace: str, name: str, version: str | None) -> None:
    tool_id = ToolId(namespace, name, version)
    assert ToolId.parse(str(tool_id)) == tool_id


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a:b:c:d", "4 parts"),
        (":x", "namespace is empty"),
        ("x:", "name is empty"),
        ("", "no namespace"),
        ("plain", "no namespace"),
        ("ns:has space", "outside [A-Za-z0-9_.-]: ' '"),
        ("ns:" + "n" * 129, "129 characters long"),
        ("ns:" + "n" * 10_000, "ids are at most"),
    ],
    ids=["four-parts", "empty-namespace", "empty-name", "empty", "no-colon", "space", "long-name", "10kB"],
)
def test_invalid_ids_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidToolIdError) as caught:
        ToolId.parse(text)
    assert reason in caught.value.message
    assert "namespace:name" in caught.value.message
    assert len(caught.value.message) < 500


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(InvalidToolIdError, match="must be a string"):
        ToolId.parse(42)  # type: ignore[arg-type]
