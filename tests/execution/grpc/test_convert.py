"""Response messages to JSON where `json_format` alone would fail: an `Any` holding a type the server never
described (its descriptors do not name it). The answer keeps everything else and that message's bytes."""

from __future__ import annotations

import base64
from typing import Any

import jsonschema
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory

from aperture.execution.grpc.convert import message_json
from aperture.execution.grpc.schema import response_schema

_ANY = ".google.protobuf.Any"
_F = descriptor_pb2.FieldDescriptorProto


def _pool() -> descriptor_pool.DescriptorPool:
    """A pool with `t.Holder {Any one; repeated Any many; map<string, Any> by_key; int64 n; Any known}` (and
    google/protobuf/any.proto and duration.proto), as a server's reflection would give it."""
    pool = descriptor_pool.DescriptorPool()
    for module in (any_pb2, duration_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    holder = descriptor_pb2.DescriptorProto(name="Holder")
    entry = holder.nested_type.add(name="ByKeyEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, type_name=_ANY, label=_F.LABEL_OPTIONAL)
    holder.field.add(name="one", number=1, type=_F.TYPE_MESSAGE, type_name=_ANY, label=_F.LABEL_OPTIONAL)
    holder.field.add(name="many", number=2, type=_F.TYPE_MESSAGE, type_name=_ANY, label=_F.LABEL_REPEATED)
    holder.field.add(
        name="by_key", number=3, type=_F.TYPE_MESSAGE, type_name=".t.Holder.ByKeyEntry", label=_F.LABEL_REPEATED
    )
    holder.field.add(name="n", number=4, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    holder.field.add(name="known", number=5, type=_F.TYPE_MESSAGE, type_name=_ANY, label=_F.LABEL_OPTIONAL)
    pool.Add(
        descriptor_pb2.FileDescriptorProto(
            name="t.proto",
            package="t",
            syntax="proto3",
            dependency=["google/protobuf/any.proto"],
            message_type=[holder],
        )
    )
    return pool


def _pack(into: Any, type_url: str, value: bytes) -> None:
    into.type_url, into.value = type_url, value  # the pool's own Any class, not any_pb2's


_SECRET = "type.googleapis.com/elsewhere.Secret"


def test_an_any_of_a_type_the_server_never_described_keeps_its_bytes_and_the_rest_converts() -> None:
    pool = _pool()
    descriptor = pool.FindMessageTypeByName("t.Holder")
    holder: Any = message_factory.GetMessageClass(descriptor)()
    _pack(holder.one, _SECRET, b"\x08\x01")
    _pack(holder.many.add(), _SECRET, b"\x08\x02")
    _pack(holder.by_key["k"], _SECRET, b"\x08\x03")
    holder.n = 2**40
    duration = duration_pb2.Duration(seconds=90).SerializeToString()
    _pack(holder.known, "type.googleapis.com/google.protobuf.Duration", duration)

    data = message_json(holder, pool)

    def opaque(raw: bytes) -> dict[str, str]:
        return {"@type": _SECRET, "value": base64.b64encode(raw).decode()}

    assert data == {
        "one": opaque(b"\x08\x01"),
        "many": [opaque(b"\x08\x02")],
        "byKey": {"k": opaque(b"\x08\x03")},
        "n": str(2**40),  # still the JSON mapping: 64-bit integers as strings
        "known": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "90s"},
    }
    jsonschema.validate(data, response_schema(descriptor, {}))  # what the tool's output schema promises


def test_an_answer_without_unknown_types_is_exactly_json_format() -> None:
    pool = _pool()
    holder: Any = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Holder"))()
    holder.n = 7
    assert message_json(holder, pool) == {"n": "7"}
