"""gRPC status codes as Aperture errors: who can fix it (the caller, the operator, time) and the status details."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

from aperture.model import (
    ApertureError,
    BackendUnavailableError,
    CancelledError,
    ConfigError,
    ExecutionError,
    InputValidationError,
    RateLimitedError,
    ToolTimeoutError,
)
from aperture.model.errors import shorten

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_SHOWN_MESSAGE = 500


def _status_class() -> type[Message]:
    """`google.rpc.Status`, built here: its .proto ships with neither protobuf nor grpcio."""
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    status = descriptor_pb2.FileDescriptorProto(name="google/rpc/status.proto", package="google.rpc", syntax="proto3")
    status.dependency.append("google/protobuf/any.proto")
    message = status.message_type.add(name="Status")
    fields = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=fields.TYPE_INT32, label=fields.LABEL_OPTIONAL)
    message.field.add(name="message", number=2, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    message.field.add(
        name="details",
        number=3,
        type=fields.TYPE_MESSAGE,
        type_name=".google.protobuf.Any",
        label=fields.LABEL_REPEATED,
    )
    pool.Add(status)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_Status = _status_class()


def status_details(error: grpc.aio.AioRpcError, pool: descriptor_pool.DescriptorPool | None = None) -> dict[str, Any]:
    """What the server said beside the code: its message, text trailing metadata, and rich status details
    (`google.rpc.Status.details`, each decoded when `pool` knows its type, else as `@type` and base64)."""
    out: dict[str, Any] = {"grpc_status": error.code().name, "grpc_message": error.details() or ""}
    metadata = {}
    rich: list[Any] = []
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            rich = _rich(value, pool)
        elif not key.startswith("grpc-") and isinstance(value, str):
            metadata[key] = value
    if metadata:
        out["metadata"] = metadata
    if rich:
        out["status_details"] = rich
    return out


def _rich(data: bytes, pool: descriptor_pool.DescriptorPool | None) -> list[Any]:
    status = _Status()
    try:
        status.ParseFromString(data)
    except DecodeError:
        return []
    found: list[Any] = []
    for detail in status.details:  # type: ignore[attr-defined]
        type_name = detail.type_url.rpartition("/")[2]
        try:
            if pool is None:
                raise KeyError(type_name)
            cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
            decoded = cls.FromString(detail.value)
            found.append({"@type": detail.type_url, **json_format.MessageToDict(decoded, descriptor_pool=pool)})
        except (KeyError, DecodeError):
            found.append({"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()})
    return found


def grpc_error(
    error: grpc.aio.AioRpcError, *, method: str, target: str, pool: descriptor_pool.DescriptorPool | None = None
) -> ApertureError:
    """The Aperture error for a failed call of `method` (`pkg.Service.Method`) on `target`."""
    code = error.code()
    said = shorten((error.details() or "").strip() or "(no message)", _SHOWN_MESSAGE)
    details = status_details(error, pool)
    where = f"gRPC method {method}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailableError(
            f"The gRPC server at {target} is unavailable ({said}), so {method} did not run. Retry later, or use "
            "a tool from another namespace.",
            details=details,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ToolTimeoutError(
            f"{where} did not answer before its deadline ({said}) and was stopped. Retry later, or with arguments "
            "that ask for less work.",
            details=details,
        )
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return InputValidationError(
            f"The server rejected the arguments of {method} ({code.name}): {said}. Fix the arguments and call again.",
            details=details,
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return ConfigError(
            f"The gRPC server refused the gateway's credentials for {method} ({code.name}: {said}). This is for "
            "the gateway's operator to fix (the backend's metadata or TLS client certificate); other arguments "
            "will not help. Use another tool meanwhile.",
            details={**details, "fix_by": "operator"},
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in said or "message larger" in said:
            return ExecutionError(
                f"The answer of {method} is larger than the backend's max_message_bytes ({said}). Ask for less "
                "(a narrower query, a smaller page), or have the operator raise max_message_bytes.",
                details=details,
            )
        return RateLimitedError(f"The server is out of resources for {method} ({said}). Retry later.", details=details)
    if code == grpc.StatusCode.CANCELLED:
        return CancelledError(f"{where} was cancelled ({said}).", details=details)
    if code == grpc.StatusCode.ABORTED:
        return ExecutionError(f"{where} was aborted ({said}); retrying may succeed.", details=details, retryable=True)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ExecutionError(
            f"The server does not implement {method} ({said}): its API changed since it was discovered. The catalog "
            "refreshes soon; search again then.",
            details=details,
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return ExecutionError(f"{where}: not found ({said}). Check the names or ids in the arguments.", details=details)
    if code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION):
        return ExecutionError(f"{where} failed ({code.name}): {said}.", details=details)
    return ExecutionError(f"{where} failed on the server ({code.name}): {said}.", details=details)
