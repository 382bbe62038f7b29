"""Arguments to request messages and response messages to JSON, through protobuf's JSON mapping (`json_format`)."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message

from aperture.execution.grpc.schema import RESULT_KEY, wraps_response
from aperture.model import ExecutionError, InputValidationError


class MethodCodec:
    """Turns one method's arguments into request bytes and its response bytes into JSON."""

    def __init__(self, method: MethodDescriptor, pool: descriptor_pool.DescriptorPool) -> None:
        self.method = method
        self.pool = pool
        self.request_class = message_class(method.input_type)
        self.response_class = message_class(method.output_type)
        self.path = f"/{method.containing_service.full_name}/{method.name}"
        self.wrapped = wraps_response(method.output_type)

    def request(self, args: dict[str, Any]) -> Message:
        """The request message for validated arguments.

        Raises:
            InputValidationError: for a value the JSON mapping refuses (bad base64, a malformed timestamp, ...),
                naming the field as json_format does.
        """
        message = self.request_class()
        try:
            json_format.ParseDict(args, message, descriptor_pool=self.pool)
        except json_format.ParseError as exc:
            raise InputValidationError(
                f"Invalid arguments for gRPC method {self.method.full_name}: {_tidy(str(exc))}. Fix that value and "
                "call again (bytes are base64 text, timestamps RFC 3339, durations like '1.5s').",
                details={"reason": str(exc)},
            ) from None
        return message

    def serialize(self, message: Message) -> bytes:
        return message.SerializeToString()

    def parse(self, data: bytes) -> Message:
        """A response message from its wire bytes."""
        try:
            return self.response_class.FromString(data)
        except DecodeError as exc:
            raise ExecutionError(
                f"The server's answer to {self.method.full_name} is not a {self.method.output_type.full_name}: {exc}. "
                "Its API may have changed; the catalog refreshes soon."
            ) from None

    def to_json(self, message: Message) -> Any:
        """The message in its JSON mapping (lowerCamelCase names, enums by name, 64-bit integers as strings, fields
        at their default left out): what `schema.response_schema` describes. An object, except for the well-known
        types written as other JSON (a Timestamp is a string)."""
        return message_json(message, self.pool)

    def result(self, message: Message) -> dict[str, Any]:
        """A unary method's answer as structured content: its JSON mapping, as `{"result": ...}` when not an
        object."""
        data = self.to_json(message)
        return {RESULT_KEY: data} if self.wrapped else data


def message_json(message: Message, pool: descriptor_pool.DescriptorPool) -> Any:
    """`message` in protobuf's JSON mapping; an `Any` holding a type `pool` does not know (the server packed a
    message its descriptors never named) is written `{"@type": <its type URL>, "value": <its bytes, base64>}`,
    where `json_format` would fail the whole answer."""
    try:
        return json_format.MessageToDict(message, descriptor_pool=pool)
    except TypeError:  # json_format's "Can not find message descriptor by type_url"
        pass
    if message.DESCRIPTOR.full_name == "google.protobuf.Any":
        return {"@type": message.type_url, "value": base64.b64encode(message.value).decode()}  # type: ignore[attr-defined]
    known = type(message)()
    known.CopyFrom(message)
    unknown: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        try:  # the field alone: whether it holds such an Any
            _field_json(field, value, pool, strict=True)
        except TypeError:
            unknown[field.json_name] = _field_json(field, value, pool, strict=False)
            known.ClearField(field.name)
    return {**json_format.MessageToDict(known, descriptor_pool=pool), **unknown}


def _field_json(field: Any, value: Any, pool: descriptor_pool.DescriptorPool, *, strict: bool) -> Any:
    def convert(item: Message) -> Any:
        return json_format.MessageToDict(item, descriptor_pool=pool) if strict else message_json(item, pool)

    if field.message_type.GetOptions().map_entry:
        entry = field.message_type.fields_by_name["value"]
        key = field.message_type.fields_by_name["key"]
        if entry.message_type is None:
            return None  # scalar values: nothing to convert here
        return {(str(k).lower() if key.type == key.TYPE_BOOL else str(k)): convert(v) for k, v in value.items()}
    if field.is_repeated:
        return [convert(item) for item in value]
    return convert(value)


def message_class(descriptor: Descriptor) -> type[Message]:
    """The Python class of a message type from any pool."""
    return message_factory.GetMessageClass(descriptor)


def _tidy(text: str) -> str:
    return text.removeprefix("Failed to parse JSON: ").rstrip(".")
