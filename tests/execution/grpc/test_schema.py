"""The JSON Schema of request messages, checked on small protos compiled for each test, and against the argument
validator every tool call goes through."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf import json_format, message_factory

from aperture.execution.grpc import message_schema, response_schema
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


OUTPUTS = """
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
enum Level { LEVEL_UNSPECIFIED = 0; LOW = 1; }
message Out {
  uint64 u = 1; fixed64 f = 2; sint64 s = 3; sfixed64 sf = 4; double d = 5; float fl = 6; bytes b = 7;
  Level level = 8; repeated Level levels = 9; map<uint64, Level> by_id = 10; map<bool, int64> flags = 11;
  google.protobuf.Int64Value i64 = 12; google.protobuf.UInt64Value u64 = 13; google.protobuf.DoubleValue dv = 14;
  google.protobuf.BytesValue bv = 15; google.protobuf.Any any = 16; google.protobuf.FieldMask mask = 17;
  google.protobuf.ListValue list = 18; google.protobuf.Empty nothing = 19; google.protobuf.Value value = 20;
  repeated google.protobuf.Timestamp times = 21; optional int64 maybe = 22;
}
message Req {}
service S {
  rpc All(Req) returns (Out);
  rpc Now(Req) returns (google.protobuf.Timestamp);
  rpc Wrapped(Req) returns (google.protobuf.Int64Value);
  rpc Anything(Req) returns (google.protobuf.Value);
  rpc Nothing(Req) returns (google.protobuf.Empty);
  rpc Times(Req) returns (stream google.protobuf.Duration);
}
"""


def codecs(tmp_path: Path) -> dict[str, Any]:
    from aperture.execution.grpc.convert import MethodCodec

    (tmp_path / "t.proto").write_text('syntax = "proto3";\npackage t;\n' + OUTPUTS)
    found = build(compile_protos([tmp_path / "t.proto"], [tmp_path]))
    return {m.name: MethodCodec(m, found.pool) for m in found.methods}


def test_output_schemas_describe_what_the_json_mapping_writes_at_the_edges(tmp_path: Path) -> None:
    from google.protobuf import timestamp_pb2, wrappers_pb2

    codec = codecs(tmp_path)["All"]
    schema = response_schema(codec.method.output_type)
    message = codec.response_class(
        u=2**64 - 1, f=2**64 - 1, s=-(2**63), sf=-1, d=float("nan"), fl=float("-inf"), b=b"\xff\xfe", maybe=0
    )
    message.level = 7  # a number the descriptors do not name (an open enum keeps it): written as 7
    message.levels.extend([1, 9])
    message.by_id[2**64 - 1] = 1
    message.flags[True] = -5
    message.i64.value, message.u64.value, message.dv.value = -(2**63), 2**64 - 1, float("inf")
    message.bv.SetInParent()
    message.any.Pack(wrappers_pb2.Int64Value(value=3))
    message.mask.paths.extend(["a_b", "c"])
    message.list.extend([1, "x", None])
    message.nothing.SetInParent()
    message.value.string_value = "v"
    message.times.add().FromSeconds(5)
    data = codec.result(message)
    assert data["u"] == "18446744073709551615" and data["d"] == "NaN" and data["fl"] == "-Infinity"
    assert data["level"] == 7 and data["levels"] == ["LOW", 9] and data["byId"] == {"18446744073709551615": "LOW"}
    assert data["i64"] == "-9223372036854775808" and data["dv"] == "Infinity" and data["bv"] == ""
    assert data["maybe"] == "0" and data["mask"] == "aB,c" and data["nothing"] == {}
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(data)
    largest = codec.result(codec.response_class(fl=3.4028234663852886e38))  # written as 3.4028235e+38
    jsonschema.validate(largest, schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid({"fl": 3.5e38})
    empty = codec.result(codec.response_class())
    assert empty == {}
    jsonschema.validate(empty, schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid({"i64": None})  # an unset wrapper is left out
    assert not jsonschema.Draft202012Validator(schema).is_valid({"u": "-1"})
    # Responses whose JSON is not an object are returned as {"result": ...}; the schema says so.
    now = codecs(tmp_path)
    stamp = now["Now"].result(timestamp_pb2.Timestamp(seconds=1, nanos=5_000_000))
    assert stamp == {"result": "1970-01-01T00:00:01.005Z"}
    for name, answer in [("Now", stamp), ("Wrapped", now["Wrapped"].result(wrappers_pb2.Int64Value(value=-1)))]:
        jsonschema.validate(answer, response_schema(now[name].method.output_type))
    value = now["Anything"]
    for answer in [value.result(value.response_class()), value.result(value.response_class(number_value=1))]:
        jsonschema.validate(answer, response_schema(value.method.output_type))
    assert value.result(value.response_class()) == {"result": None}
    nothing = now["Nothing"]
    assert nothing.result(nothing.response_class()) == {}
    assert response_schema(nothing.method.output_type) == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    times = response_schema(now["Times"].method.output_type, streaming=True)
    assert times["properties"]["messages"]["items"]["pattern"].endswith("s$")  # a stream of Durations, unwrapped


def test_a_closed_proto2_enum_is_written_by_name_only(tmp_path: Path) -> None:
    (tmp_path / "p2.proto").write_text(
        'syntax = "proto2";\npackage p;\nenum E { A = 0; B = 1; }\n'
        "message Out { required E e = 1; optional int64 n = 2; extensions 100 to 199; }\n"
        "extend Out { optional int32 note = 100; }"
    )
    found = build(compile_protos([tmp_path / "p2.proto"], [tmp_path]))
    out = found.pool.FindMessageTypeByName("p.Out")
    schema = response_schema(out)
    assert schema["properties"]["e"] == {"type": "string", "enum": ["A", "B"]}
    assert schema["required"] == ["e"] and schema["properties"]["n"]["type"] == "string"
    out_class: Any = message_factory.GetMessageClass(out)  # (its fields are known at run time only)
    message = out_class(e=1)
    extension: Any = found.pool.FindExtensionByName("p.note")
    message.Extensions[extension] = 5
    written = json_format.MessageToDict(message, descriptor_pool=found.pool)
    assert written == {"e": "B", "[p.note]": 5}
    jsonschema.validate(written, schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid({"e": "B", "note": 5})
