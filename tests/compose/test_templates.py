"""Templates: `{{ JMESPath }}` slots, typed when a string is one slot, text otherwise; what each slot reads."""

from __future__ import annotations

import pytest

from aperture.compose.templates import MAX_TEXT, Expression, ExpressionError, Template, check_reads, truthy

DATA = {
    "inputs": {"title": "Hello", "n": 3, "tags": ["a", "b"], "flag": False},
    "steps": {"fetch": {"items": [{"name": "x", "size": 2}, {"name": "y", "size": 5}]}},
    "previous": {"result": "done"},
}


def test_a_string_that_is_one_slot_keeps_the_value_type() -> None:
    template = Template.compile(
        {"n": "{{ inputs.n }}", "tags": " {{ inputs.tags }} ", "big": "{{ steps.fetch.items[?size > `3`].name }}"}
    )
    assert template.render(DATA) == {"n": 3, "tags": ["a", "b"], "big": ["y"]}


def test_slots_among_text_are_written_in_as_text_and_json() -> None:
    template = Template.compile(["{{ inputs.title }}, {{ inputs.n }} tags: {{ inputs.tags }} {{ inputs.nothing }}"])
    assert template.render(DATA) == ['Hello, 3 tags: ["a","b"] null']


def test_literal_values_pass_through_untouched() -> None:
    template = Template.compile({"a": 1, "b": [True, None, "plain"], "c": {"d": "no slots"}})
    assert template.is_literal and template.render({}) == {"a": 1, "b": [True, None, "plain"], "c": {"d": "no slots"}}


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("inputs.title", [("inputs", "title")]),
        ("steps.fetch.items[?size > `3`].name | [0]", [("steps", "fetch", "items")]),
        ("steps.fetch[0].name", [("steps", "fetch")]),
        ("{a: inputs.n, b: length(previous.result)}", [("inputs", "n"), ("previous", "result")]),
        ("sort_by(steps.fetch.items, &size)", [("steps", "fetch", "items")]),
        ("inputs.flag && item.name || `null`", [("inputs", "flag"), ("item", "name")]),
        ("@", [()]),
        ("`[1, 2]`", []),
    ],
    ids=["field", "filter", "index", "multiselect", "expref", "logic", "current", "literal"],
)
def test_an_expression_knows_what_it_reads_from_the_data(source: str, reads: list[tuple[str, ...]]) -> None:
    assert list(Expression.parse(source).reads) == reads


def test_a_slot_that_does_not_parse_says_where_it_is() -> None:
    with pytest.raises(ExpressionError) as raised:
        Template.compile({"a": ["ok", "{{ inputs.[ }}"]})
    assert raised.value.where == "a[1]" and "not a valid JMESPath expression" in raised.value.reason
    with pytest.raises(ExpressionError, match="empty"):
        Expression.parse("{{   }}")


def test_a_failing_function_is_an_expression_error_not_a_crash() -> None:
    with pytest.raises(ExpressionError) as raised:
        Template.compile({"n": "{{ length(inputs.n) }}"}).render(DATA)
    assert raised.value.where == "n" and "failed" in raised.value.reason


def test_expressions_read_data_only_never_python_attributes() -> None:
    assert Template.compile("{{ inputs.__class__ }}").render(DATA) is None
    assert Template.compile("{{ inputs.title.upper }}").render(DATA) is None


def test_render_known_fills_only_slots_whose_data_is_known() -> None:
    template = Template.compile({"a": "{{ inputs.title }}", "b": "{{ steps.fetch.items }}", "c": "x {{ previous }}"})
    assert template.render_known({"inputs": DATA["inputs"]}, {"inputs"}) == {
        "a": "Hello",
        "b": "{{ steps.fetch.items }}",
        "c": "x {{ previous }}",
    }


def test_filled_text_cannot_grow_without_bound() -> None:
    template = Template.compile("{{ inputs.big }}{{ inputs.big }}")
    with pytest.raises(ExpressionError, match="grows past"):
        template.render({"inputs": {"big": "x" * (MAX_TEXT // 2 + 1)}})


def test_check_reads_names_what_a_template_may_not_read() -> None:
    template = Template.compile({"a": "{{ inputs.nme }}", "b": "{{ secrets.key }}", "c": "{{ @ }}"})

    def declared(path: tuple[str, ...]) -> str | None:
        return None if path[1:] in ((), ("name",)) else f"inputs.{path[1]} is not declared"

    problems = check_reads(template.reads(), {"inputs": declared})
    assert [(p.where, p.reason) for p in problems] == [
        ("a", "inputs.nme is not declared"),
        ("b", "'secrets' is not something a template can read here; it sees inputs"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(False, False), (None, False), ("", False), ([], False), ({}, False), (0, True), ("no", True), ([0], True)],
    ids=["false", "null", "empty-str", "empty-list", "empty-obj", "zero", "str", "list"],
)
def test_truth_follows_jmespath(value: object, expected: bool) -> None:
    assert truthy(value) is expected
