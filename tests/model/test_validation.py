"""Argument validation with coercion: every problem at once, in words a model can act on."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from aperture.model import ArgumentValidator, InputValidationError, OutputValidationError, OutputValidator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "description": "How many."},
        "ratio": {"type": "number"},
        "enabled": {"type": "boolean"},
        "label": {"type": "string"},
        "mode": {"type": "string", "enum": ["fast", "safe"]},
        "options": {"type": "object", "properties": {"depth": {"type": "integer"}}},
        "items": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["count"],
}


def validate(args: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    return ArgumentValidator(schema, tool_id="t:x").validate(args)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"count": "123"}, {"count": 123}),
        ({"count": 3.0}, {"count": 3}),
        ({"count": 1, "ratio": "1.5"}, {"count": 1, "ratio": 1.5}),
        ({"count": 1, "ratio": "2"}, {"count": 1, "ratio": 2}),
        ({"count": 1, "enabled": "true"}, {"count": 1, "enabled": True}),
        ({"count": 1, "enabled": "False"}, {"count": 1, "enabled": False}),
        ({"count": 1, "label": 7}, {"count": 1, "label": "7"}),
        ({"count": 1, "label": True}, {"count": 1, "label": "true"}),
        ({"count": 1, "options": '{"depth": "2"}'}, {"count": 1, "options": {"depth": 2}}),
        ({"count": 1, "items": '["1", 2]'}, {"count": 1, "items": [1, 2]}),
    ],
    ids=[
        "str-int",
        "float-int",
        "str-float",
        "str-number-int",
        "true",
        "False",
        "int-str",
        "bool-str",
        "json-object",
        "json-array",
    ],
)
def test_safe_coercions_are_applied(given: dict[str, Any], expected: dict[str, Any]) -> None:
    assert validate(given) == expected


@pytest.mark.parametrize(
    "given",
    [{"count": "12abc"}, {"count": 1.5}, {"count": 1, "enabled": "yes"}, {"count": 1, "options": "[1]"}],
    ids=["not-a-number", "fractional", "yes-is-not-a-boolean", "array-for-object"],
)
def test_unsafe_values_are_not_coerced(given: dict[str, Any]) -> None:
    with pytest.raises(InputValidationError):
        validate(given)


def test_all_problems_are_reported_together_with_the_valid_parameters() -> None:
    with pytest.raises(InputValidationError) as caught:
        validate({"cuont": 1, "mode": "turbo", "ratio": "fast"})
    message = caught.value.message
    assert message.startswith("Invalid arguments for tool 't:x' (4 problems):")
    assert "- unknown argument 'cuont'. Did you mean 'count'?" in message
    assert "- missing required argument 'count' (integer)" in message
    assert '- argument \'mode\' must be one of "fast", "safe"; got "turbo"' in message
    assert "- argument 'ratio' must be number; got string \"fast\"" in message
    assert "Valid parameters:\n- count (integer, required): How many." in message
    assert "- mode (string, optional) One of: 'fast', 'safe'." in message
    violations = caught.value.details["violations"]
    assert {v["path"] for v in violations} == {"cuont", "count", "mode", "ratio"}
    assert next(v for v in violations if v["path"] == "mode")["allowed"] == ["fast", "safe"]


def test_nested_problems_name_their_path() -> None:
    with pytest.raises(InputValidationError) as caught:
        validate({"count": 1, "items": [1, "x"], "options": {"depth": "deep"}})
    message = caught.value.message
    assert "argument 'items[1]' must be integer" in message
    assert "argument 'options.depth' must be integer" in message


def test_unknown_arguments_allowed_when_the_schema_says_so() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True}
    assert validate({"a": "x", "b": 1}, schema) == {"a": "x", "b": 1}


def test_huge_values_are_not_echoed_back() -> None:
    with pytest.raises(InputValidationError) as caught:
        validate({"count": "x" * 1_000_000})
    assert len(caught.value.message) < 1000


def test_a_broken_schema_does_not_make_the_tool_unusable() -> None:
    validator = ArgumentValidator({"type": "object", "properties": {"a": {"type": "no-such-type"}}}, tool_id="t:x")
    assert validator.validate({"a": 1}) == {"a": 1}


def test_tool_without_parameters_says_so() -> None:
    with pytest.raises(InputValidationError) as caught:
        validate({"x": 1}, {"type": "object", "properties": {}})
    assert "This tool takes no parameters: pass {}." in caught.value.message


def test_local_refs_are_followed_for_coercion() -> None:
    schema = {
        "type": "object",
        "properties": {"point": {"$ref": "#/$defs/Point"}},
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    }
    assert validate({"point": {"x": "5"}}, schema) == {"point": {"x": 5}}


def test_output_validation() -> None:
    validator = OutputValidator(
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, tool_id="t:x"
    )
    validator.check({"n": 1})
    with pytest.raises(OutputValidationError, match="does not match its output schema"):
        validator.check({"n": "one"})
    with pytest.raises(OutputValidationError, match="no structured content"):
        validator.check_missing()


OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "big": {"type": "string", "pattern": "^-?[0-9]+$"},
        "ratio": {"type": ["number", "string"], "pattern": "^(NaN|-?Infinity)$"},
        "color": {"anyOf": [{"type": "string", "enum": ["RED"]}, {"type": "integer"}]},
        "tree": {"$ref": "#/$defs/Node"},
    },
    "additionalProperties": False,
    "$defs": {"Node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
}


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"big": "-12", "ratio": 1.5, "color": "RED", "tree": {"kids": [{"kids": []}]}},
        {"ratio": "NaN", "color": 7},
        {"big": 12},
        {"ratio": "1.5"},
        {"color": "BLUE"},
        {"tree": {"kids": [{"kids": "no"}]}},
        {"other": 1},
        [],
    ],
    ids=lambda v: json.dumps(v)[:40],
)
def test_the_compiled_output_check_agrees_with_the_python_validator(value: Any) -> None:
    validator = OutputValidator(OUTPUT_SCHEMA, tool_id="t:x")
    expected = jsonschema.Draft202012Validator(OUTPUT_SCHEMA).is_valid(value)
    assert validator._fast is not None and validator._fast.is_valid(value) == expected
    if expected:
        validator.check(value)
    else:
        with pytest.raises(OutputValidationError, match="does not match its output schema"):
            validator.check(value)


@pytest.mark.parametrize("depth", [65, 100_000], ids=["65", "100k"])
def test_a_json_string_nested_too_deep_is_refused_before_it_is_parsed(depth: int) -> None:
    deep = '{"depth":' + "[" * depth + "]" * depth + "}"
    with pytest.raises(InputValidationError) as caught:
        validate({"count": 1, "items": "[" * depth + "]" * depth})
    assert "argument 'items' is a JSON string that nests objects and arrays more than 64 levels deep" in str(
        caught.value
    )
    with pytest.raises(InputValidationError) as caught:
        validate({"count": 1, "options": deep})
    assert caught.value.details["violations"][0]["path"] == "options"
    assert validate({"count": 1, "options": '{"depth": 3}'})["options"] == {"depth": 3}
