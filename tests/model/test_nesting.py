"""The JSON depth scan: exact on valid JSON, never fooled by brackets in strings or escapes, never recursive."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aperture.model import nesting
from aperture.model.nesting import MAX_JSON_DEPTH, json_too_deep, leading_id


def reference_depth(text: str) -> int:
    """The deepest nesting of `text`, character by character (slow, obviously right).

    A backslash escapes the character after it everywhere, as the scan reads it: in a string as JSON says,
    and outside one, where JSON allows no backslash, so that a parser stops there and never reaches what
    follows. There an escaped quote opens no string; an escaped bracket still counts.
    """
    depth = deepest = 0
    inside = escaped = False
    for char in text:
        if escaped:
            escaped = False
            if char == '"':
                continue
        elif char == "\\":
            escaped = True
            continue
        elif char == '"':
            inside = not inside
            continue
        if inside:
            continue
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize("text", ['\\""[', '\\"[', "\\[[", '"\\\\"[['])
def test_backslashes_outside_strings_read_as_the_scan_reads_them(text: str) -> None:
    # Found by hypothesis: '\""[' is 1 deep with a backslash escaping only in strings, 0 as the scan reads it.
    # json.loads stops at the first backslash outside a string, so it reaches no bracket after it.
    assert json_too_deep(text, 0) == (reference_depth(text) > 0)


TRICKY = st.lists(st.sampled_from(["a[b", "]}]}", "\\", '"', '\\"[', "{{", "é", "\n"]), max_size=4).map("".join)
JSON_VALUES = st.recursive(
    st.none() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300)
@given(value=JSON_VALUES, limit=st.integers(0, 6), chunk=st.sampled_from([3, 7, 1 << 20]))
def test_the_scan_is_exact_on_valid_json(value: Any, limit: int, chunk: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nesting, "_CHUNK", chunk)  # chunk edges fall inside strings and backslash runs
        assert json_too_deep(text, limit) == (reference_depth(text) > limit)


@settings(max_examples=300)
@given(text=st.text(st.sampled_from('[]{}"\\ax,'), max_size=60), limit=st.integers(0, 4))
def test_the_scan_never_misses_depth_in_text_that_is_not_json(text: str, limit: int) -> None:
    if reference_depth(text) > limit:
        assert json_too_deep(text, limit)


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        ("[" * 65 + "]" * 65, True),
        ("[" * 64 + "]" * 64, False),
        ('{"a":' * 65 + "1" + "}" * 65, True),
        ('["' + "[" * 1000 + '"]', False),  # brackets in a string
        ('["\\"' + "[" * 1000 + '"]', False),  # an escaped quote does not end the string
        ('["\\\\"' + ",[" * 100 + "]" * 100, True),  # an escaped backslash does not escape the quote
        ("[" + "[]," * 10_000 + "[]]", False),  # wide, not deep
        ("[" * 100_000, True),
    ],
    ids=["65", "64", "objects-65", "in-string", "escaped-quote", "escaped-backslash", "wide", "100k-open"],
)
def test_depth_is_counted_outside_strings(text: str, deep: bool) -> None:
    assert json_too_deep(text) is deep
    assert json_too_deep(text.encode()) is deep


def test_a_text_with_few_brackets_is_answered_by_counting() -> None:
    assert MAX_JSON_DEPTH == 64
    assert not json_too_deep("x" * 1_000_000 + "[" * 64)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"jsonrpc": "2.0", "id": 7, "params": ' + b"[" * 100, 7),
        (b'{"method":"tools/call","id":"a\\"b","params":{}}', 'a"b'),
        (b'{"result":' + b"[" * 100 + b"]" * 100 + b',"jsonrpc":"2.0","id":"ap-9"}', "ap-9"),
        (b'{"params":{"id":5}}', None),  # a nested id is not the message's
        (b'{"id":1.5}', None),
        (b'{"id":{"x":1}}', None),
    ],
    ids=["leading", "escaped-string", "trailing", "nested", "float", "object"],
)
def test_the_id_of_a_message_too_deep_to_parse(text: bytes, found: str | int | None) -> None:
    assert leading_id(text) == found
