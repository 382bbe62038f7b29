"""JSON Schema for a protobuf message, as its JSON mapping (ProtoJSON) reads: the input schema of a gRPC tool.

Scalars carry their ranges, enums their names, `oneof` groups become `oneOf` (none or exactly one member), the
well-known types take their JSON forms, and messages that contain themselves are `$defs` entries reached by `$ref`
instead of an endless expansion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_UINT64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
_FLOAT = {"type": "number", "minimum": -3.4028234663852886e38, "maximum": 3.4028234663852886e38}
_BASE64 = "^[A-Za-z0-9+/_-]*={0,2}$"
_BYTES = {"type": "string", "contentEncoding": "base64", "pattern": _BASE64}

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: _FLOAT,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: _BYTES,
}


def _nullable(schema: Mapping[str, Any], note: str) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"], "description": note}


_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "An RFC 3339 time, e.g. 2024-05-01T12:00:00Z.",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Seconds with an 's', e.g. '90s' or '1.5s'.",
    },
    "google.protobuf.Struct": {"type": "object", "description": "Any JSON object."},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "description": "Any JSON array."},
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Field paths, comma-separated, in lowerCamelCase (e.g. 'name,price').",
    },
    "google.protobuf.Empty": {"type": "object", "properties": {}, "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string", "description": "type.googleapis.com/<full message name>"}},
        "required": ["@type"],
        "description": "A message of any type: '@type' names it, its fields follow.",
    },
    "google.protobuf.DoubleValue": _nullable({"type": "number"}, "A number, or null."),
    "google.protobuf.FloatValue": _nullable(_FLOAT, "A number, or null."),
    "google.protobuf.Int64Value": _nullable(_INT64, "A 64-bit integer, or null."),
    "google.protobuf.UInt64Value": _nullable(_UINT64, "An unsigned 64-bit integer, or null."),
    "google.protobuf.Int32Value": _nullable(_INT32, "A 32-bit integer, or null."),
    "google.protobuf.UInt32Value": _nullable(_UINT32, "An unsigned 32-bit integer, or null."),
    "google.protobuf.BoolValue": _nullable({"type": "boolean"}, "true, false, or null."),
    "google.protobuf.StringValue": _nullable({"type": "string"}, "A string, or null."),
    "google.protobuf.BytesValue": _nullable(_BYTES, "Base64-encoded bytes, or null."),
}
_F = FieldDescriptor
_SIGNED = (_F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_SINT32, _F.TYPE_SINT64, _F.TYPE_SFIXED32, _F.TYPE_SFIXED64)
_UNSIGNED = (_F.TYPE_UINT32, _F.TYPE_UINT64, _F.TYPE_FIXED32, _F.TYPE_FIXED64)
_MAP_KEYS: dict[int, str] = {
    _F.TYPE_BOOL: "^(true|false)$",
    **dict.fromkeys(_SIGNED, "^-?[0-9]+$"),
    **dict.fromkeys(_UNSIGNED, "^[0-9]+$"),
}


def _message_type(fld: FieldDescriptor) -> Descriptor:
    assert fld.message_type is not None, fld.full_name
    return fld.message_type


def message_schema(message: Descriptor, comments: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON Schema of `message` in its JSON mapping (field names in lowerCamelCase, as ProtoJSON writes them)."""
    return _Builder(comments or {}).root(message)


class _Builder:
    def __init__(self, comments: Mapping[str, str]) -> None:
        self.comments = comments
        self.recursive: set[str] = set()
        self.defs: dict[str, dict[str, Any]] = {}

    def root(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:  # e.g. google.protobuf.Empty as a request
            schema = dict(_WELL_KNOWN[message.full_name])
            return schema if schema.get("type") == "object" else {"type": "object", "properties": {}}
        self.recursive = recursive_messages(message)
        schema = self._body(message)
        if self.defs:
            schema["$defs"] = self.defs
        return schema

    def _body(self, message: Descriptor) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        synthetic = _synthetic_oneofs(message)
        for fld in message.fields:
            properties[fld.json_name] = self._field(fld, optional=fld.containing_oneof is not None and fld in synthetic)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [f.json_name for f in message.fields if f.is_required]  # proto2's `required`
        if required:
            schema["required"] = required
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        groups = [o for o in message.oneofs if not (len(o.fields) == 1 and o.fields[0] in synthetic)]
        alternatives = [_one_of(o.name, [f.json_name for f in o.fields]) for o in groups]
        if len(alternatives) == 1:
            schema.update(alternatives[0])
        elif alternatives:
            schema["allOf"] = alternatives
        return schema

    def _field(self, fld: FieldDescriptor, *, optional: bool = False) -> dict[str, Any]:
        if fld.type == FieldDescriptor.TYPE_MESSAGE and _message_type(fld).GetOptions().map_entry:
            entry = _message_type(fld)
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            schema: dict[str, Any] = {"type": "object", "additionalProperties": self._single(value)}
            if key.type in _MAP_KEYS:
                schema["propertyNames"] = {"pattern": _MAP_KEYS[key.type]}
        elif fld.is_repeated:
            schema = {"type": "array", "items": self._single(fld)}
        else:
            schema = self._single(fld)
        notes = [self.comments.get(fld.full_name, "")]
        if optional:
            notes.append("(optional: leaving it out differs from giving the default)")
        if fld.containing_oneof is not None and not optional:
            members = ", ".join(f.json_name for f in fld.containing_oneof.fields)
            notes.append(f"(one of {members}: give at most one)")
        description = " ".join(n for n in notes if n)
        if description:
            inner = schema.get("description")
            schema = {**schema, "description": f"{description} {inner}" if inner else description}
        return schema

    def _single(self, fld: FieldDescriptor) -> dict[str, Any]:
        if fld.type == FieldDescriptor.TYPE_ENUM:
            assert fld.enum_type is not None, fld.full_name
            return self._enum(fld.enum_type)
        if fld.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            return self._message(_message_type(fld))
        return dict(_SCALARS[fld.type])

    def _message(self, message: Descriptor) -> dict[str, Any]:
        known = _WELL_KNOWN.get(message.full_name)
        if known is not None:
            return dict(known)
        if message.full_name not in self.recursive:
            return self._body(message)
        if message.full_name not in self.defs:
            self.defs[message.full_name] = {}  # placed first: the body refers back to it
            self.defs[message.full_name] = self._body(message)
        return {"$ref": f"#/$defs/{message.full_name}"}

    def _enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.values]}
        notes = [
            f"{v.name}: {self.comments[f'{enum.full_name}.{v.name}'].rstrip('.')}"
            for v in enum.values
            if self._noted(enum, v)
        ]
        intro = self.comments.get(enum.full_name, "")
        if intro or notes:
            schema["description"] = " ".join([intro, *(f"{n}." for n in notes)]).strip()
        return schema

    def _noted(self, enum: EnumDescriptor, value: Any) -> bool:
        return f"{enum.full_name}.{value.name}" in self.comments


def _one_of(name: str, members: list[str]) -> dict[str, Any]:
    """`oneof name`: none of `members`, or exactly one."""
    each = [{"required": [m]} for m in members]
    return {"oneOf": [*each, {"not": {"anyOf": each}, "title": f"none of oneof {name}"}]}


def _synthetic_oneofs(message: Descriptor) -> set[FieldDescriptor]:
    """The fields declared `optional` in proto3: each sits alone in a oneof the compiler made up."""
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    names = {f.name for f in proto.field if f.proto3_optional}
    return {f for f in message.fields if f.name in names}


def recursive_messages(message: Descriptor) -> set[str]:
    """Full names of the messages reachable from `message` that can contain themselves (directly or not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[str] = set()

    def children(msg: Descriptor) -> list[Descriptor]:
        kinds = (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)
        found = [_message_type(f) for f in msg.fields if f.type in kinds]
        return [m for m in found if m.full_name not in _WELL_KNOWN]

    def visit(msg: Descriptor) -> None:  # Tarjan's strongly connected components
        name = msg.full_name
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        kids = children(msg)
        for child in kids:
            if child.full_name not in index:
                visit(child)
                low[name] = min(low[name], low[child.full_name])
            elif child.full_name in on_stack:
                low[name] = min(low[name], index[child.full_name])
        if low[name] == index[name]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == name:
                    break
            if len(component) > 1 or any(k.full_name == name for k in kids):
                found.update(component)

    visit(message)
    return found
