"""Arguments to request messages and response messages to JSON, through protobuf's JSON mapping (`json_format`)."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message

from aperture.model import ExecutionError, InputValidationError


class MethodCodec:
    """Turns one method's arguments into request bytes and its response bytes into JSON."""

    def __init__(self, method: MethodDescriptor, pool: descriptor_pool.DescriptorPool) -> None:
        self.method = method
        self.pool = pool
        self.request_class = message_class(method.input_type)
        self.response_class = message_class(method.output_type)
        self.path = f"/{method.containing_service.full_name}/{method.name}"

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

    def to_json(self, message: Message) -> dict[str, Any]:
        """The message in its JSON mapping (lowerCamelCase names, enums by name, 64-bit integers as strings)."""
        return json_format.MessageToDict(message, descriptor_pool=self.pool)


def message_class(descriptor: Descriptor) -> type[Message]:
    """The Python class of a message type from any pool."""
    return message_factory.GetMessageClass(descriptor)


def _tidy(text: str) -> str:
    return text.removeprefix("Failed to parse JSON: ").rstrip(".")
