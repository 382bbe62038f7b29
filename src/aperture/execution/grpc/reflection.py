"""Server reflection, the client side: ask a running server for its services and the proto files that define them.

Speaks `grpc.reflection.v1alpha` (what grpcio-reflection serves) and falls back to `grpc.reflection.v1` (the same
messages under another service name), which servers in other languages may offer alone.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence

import grpc
import grpc.aio
from google.protobuf import (  # noqa: F401  (the well-known types' modules register their files in the default pool)
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from grpc_reflection.v1alpha import reflection_pb2

from aperture.execution.grpc.discovery import INFRASTRUCTURE, DiscoveryError

_PATHS = (
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
)
_SKIPPED_SERVICES = frozenset({"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"})
MAX_FILES = 2000


class ReflectionUnavailableError(DiscoveryError):
    """The server does not answer reflection: turned off, or not offered."""


async def fetch_files(
    channel: grpc.aio.Channel, *, metadata: Sequence[tuple[str, str]] = (), timeout: float = 10.0
) -> tuple[list[descriptor_pb2.FileDescriptorProto], list[str]]:
    """The services the server lists (reflection's own left out) and the proto files that define them, imports
    included (a file may define services the server does not list: only the listed ones are served).

    Raises:
        ReflectionUnavailableError: when neither reflection version is served.
        grpc.aio.AioRpcError: for any other failure (unreachable, deadline, refused by auth).
    """
    last: grpc.aio.AioRpcError | None = None
    for path in _PATHS:
        try:
            return await _Session(channel, path, metadata, timeout).files()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            last = exc
    raise ReflectionUnavailableError(
        "the server does not offer server reflection"
        + (" (UNIMPLEMENTED)" if last is not None else "")
        + "; turn it on in the server, or give the backend 'protos' (.proto files) or a 'descriptor_set'"
    )


class _Session:
    """Reflection requests, each sent as a call of its own on the bidirectional method (one request, one answer).

    A single long stream would do too, but grpcio reports a server's immediate UNIMPLEMENTED on a stream whose
    first request is still being written as INTERNAL ("Internal error from Core") now and then: separate calls
    get the server's status as it is.
    """

    def __init__(self, channel: grpc.aio.Channel, path: str, metadata: Sequence[tuple[str, str]], timeout: float):
        self._ask_once = channel.unary_unary(
            path,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        self._metadata = tuple(metadata)
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    async def _ask(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DiscoveryError(f"reflection took longer than {self._timeout:g} s (connect_timeout)")
        response: reflection_pb2.ServerReflectionResponse = await self._ask_once(
            request, metadata=self._metadata, timeout=left
        )
        return response

    def _take(self, response: reflection_pb2.ServerReflectionResponse) -> None:
        for data in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(data)
            self._files.setdefault(proto.name, proto)

    async def files(self) -> tuple[list[descriptor_pb2.FileDescriptorProto], list[str]]:
        listed = await self._ask(reflection_pb2.ServerReflectionRequest(list_services=""))
        if listed.HasField("error_response"):
            raise DiscoveryError(f"reflection could not list services: {listed.error_response.error_message}")
        services = [s.name for s in listed.list_services_response.service if s.name not in _SKIPPED_SERVICES]
        described = []
        for service in services:
            answer = await self._ask(reflection_pb2.ServerReflectionRequest(file_containing_symbol=service))
            if answer.HasField("error_response"):
                if any(fnmatch.fnmatchcase(service, pattern) for pattern in INFRASTRUCTURE):
                    # grpc++'s built-in health service is listed but has no descriptor: not a tool anyway.
                    continue
                raise DiscoveryError(
                    f"reflection lists service {service} but has no file for it: {answer.error_response.error_message}"
                )
            self._take(answer)
            described.append(service)
        await self._imports()
        return list(self._files.values()), described

    async def _imports(self) -> None:
        """Ask for every imported file not yet sent; the well-known types come from protobuf itself if the server
        does not know them."""
        wanted = self._missing()
        while wanted and len(self._files) < MAX_FILES:
            for name in wanted:
                answer = await self._ask(reflection_pb2.ServerReflectionRequest(file_by_filename=name))
                if answer.HasField("error_response"):
                    self._files[name] = _bundled(name)
                else:
                    self._take(answer)
                    if name not in self._files:
                        self._files[name] = _bundled(name)
            wanted = self._missing()

    def _missing(self) -> list[str]:
        return sorted({d for f in self._files.values() for d in f.dependency if d not in self._files})


def _bundled(name: str) -> descriptor_pb2.FileDescriptorProto:
    """A file protobuf ships (google/protobuf/*.proto), for a server that imports it but will not send it."""
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    except KeyError:
        raise DiscoveryError(f"reflection has no file {name}, which the server's protos import") from None
    return proto
