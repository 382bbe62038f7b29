"""The JSON Schema of request messages, checked on small protos compiled for each test, and against the argument
validator every tool call goes through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aperture.execution.grpc import message_schema
from aperture.execution.grpc.discovery import build, compile_protos
from aperture.model import ArgumentValidator, InputValidationError


def schema_of(tmp_path: Path, text: str, message: str) -> dict[str, Any]:
    (tmp_path / "t.proto").write_text('syntax = "proto3";\npackage t;\n' + text)
    found = build(compile_protos([tmp_path / "t.proto"], [tmp_path]))
    return message_schema(found.pool.FindMessageTypeByName(f"t.{message}"), found.comments)


def test_mutually_recursive_messages_are_defs_that_refer_to_each_other(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path,
        "message Dir { string name = 1; repeated File files = 2; }\n"
        "message File { string name = 1; Dir parent = 2; map<string, Dir> links = 3; }\n"
        "message Req { Dir root = 1; int32 depth = 2; }",
        "Req",
    )
    assert schema["properties"]["root"] == {"$ref": "#/$defs/t.Dir"}
    assert schema["$defs"]["t.Dir"]["properties"]["files"]["items"] == {"$ref": "#/$defs/t.File"}
    assert schema["$defs"]["t.File"]["properties"]["links"]["additionalProperties"] == {"$ref": "#/$defs/t.Dir"}
    assert "depth" in schema["properties"] and set(schema["$defs"]) == {"t.Dir", "t.File"}
    validator = ArgumentValidator(schema, tool_id="t:x")
    deep = {"root": {"name": "a", "files": [{"name": "f", "parent": {"name": "a", "files": []}}]}}
    assert validator.validate(deep) == deep
    with pytest.raises(InputValidationError, match="files"):
        validator.validate({"root": {"files": [{"parent": {"files": "no"}}]}})


def test_a_message_used_twice_without_recursion_is_inlined_both_times(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, "message P { int32 x = 1; }\nmessage Req { P a = 1; P b = 2; }", "Req")
    assert schema["properties"]["a"] == schema["properties"]["b"] and "$defs" not in schema


def test_an_empty_request_takes_no_arguments(tmp_path: Path) -> None:
    schema = schema_of(tmp_path, 'import "google/protobuf/empty.proto";\nmessage Unused {}', "Unused")
    assert schema == {"type": "object", "properties": {}, "additionalProperties": False}
    (tmp_path / "e.proto").write_text(
        'syntax = "proto3";\npackage e;\nimport "google/protobuf/empty.proto";\n'
        "service S { rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty); }"
    )
    found = build(compile_protos([tmp_path / "e.proto"], [tmp_path]))
    (ping,) = found.methods
    assert message_schema(ping.input_type) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_oneof_allows_none_or_exactly_one_member_and_two_groups_combine(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path, "message Req { oneof a { int32 x = 1; string y = 2; } oneof b { bool p = 3; bool q = 4; } }", "Req"
    )
    validator = ArgumentValidator(schema, tool_id="t:x")
    for good in ({}, {"x": 1}, {"y": "s", "p": True}, {"q": False}):
        validator.validate(good)
    for bad in ({"x": 1, "y": "s"}, {"p": True, "q": True}):
        with pytest.raises(InputValidationError):
            validator.validate(bad)
    assert len(schema["allOf"]) == 2


def test_integer_map_keys_and_64_bit_ranges(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path, "message Req { map<uint64, string> by_id = 1; uint64 big = 2; sint64 neg = 3; bool ok = 4; }", "Req"
    )
    validator = ArgumentValidator(schema, tool_id="t:x")
    validator.validate({"byId": {"18446744073709551615": "max"}, "big": 2**64 - 1, "neg": -(2**63)})
    for bad in ({"byId": {"-1": "x"}}, {"big": 2**64}, {"neg": -(2**63) - 1}):
        with pytest.raises(InputValidationError):
            validator.validate(bad)
    assert validator.validate({"big": "42", "ok": "true"}) == {"big": 42, "ok": True}  # coerced like any tool's


def test_comments_describe_fields_enums_and_their_values(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path,
        "// How to sort.\nenum Order {\n  // As stored.\n  NONE = 0;\n  // Newest first.\n  NEWEST = 1;\n}\n"
        "message Req {\n  // The sort order of the results.\n  Order order = 1;\n"
        "  int32 plain = 2; // Trailing note.\n}",
        "Req",
    )
    order = schema["properties"]["order"]
    assert order["description"] == "The sort order of the results. How to sort. NONE: As stored. NEWEST: Newest first."
    assert schema["properties"]["plain"]["description"] == "Trailing note."


def test_proto2_required_fields_are_required(tmp_path: Path) -> None:
    (tmp_path / "p2.proto").write_text(
        'syntax = "proto2";\npackage p;\nmessage Req { required string id = 1; optional int32 n = 2; }'
    )
    found = build(compile_protos([tmp_path / "p2.proto"], [tmp_path]))
    schema = message_schema(found.pool.FindMessageTypeByName("p.Req"))
    assert schema["required"] == ["id"]
    with pytest.raises(InputValidationError, match="missing required argument 'id'"):
        ArgumentValidator(schema, tool_id="p:x").validate({"n": 1})
