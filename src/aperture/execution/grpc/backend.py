"""The `grpc` backend: every unary and server-streaming method of a gRPC server becomes a tool
`namespace:package.Service.Method`, called over one `grpc.aio` channel that all calls share.

Methods come from server reflection or from `.proto` files / a descriptor set; a monitor checks the server's health
every `refresh_interval` (grpc.health.v1, else the channel's connectivity), marks the backend down while the server
is away and up when it returns, and with reflection picks up methods the server gained or lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import grpc
import grpc.aio
import mcp_types
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_health.v1 import health_pb2

from aperture.execution.backend import CallContext, HealthStatus
from aperture.execution.grpc.channel import open_channel
from aperture.execution.grpc.convert import MethodCodec
from aperture.execution.grpc.discovery import Discovered, DiscoveryError, build, compile_protos, read_descriptor_set
from aperture.execution.grpc.errors import grpc_error
from aperture.execution.grpc.reflection import fetch_files
from aperture.execution.grpc.schema import message_schema
from aperture.execution.grpc.settings import KIND, GrpcSettings
from aperture.execution.result import ToolOutput
from aperture.model import (
    ApertureError,
    ConfigError,
    InvalidToolIdError,
    Tool,
    ToolAnnotations,
    ToolId,
    UnknownToolError,
)

logger = logging.getLogger(__name__)

_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_HEALTH_PATH = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True, slots=True)
class _Method:
    """A served method: its tool and what calls it."""

    tool: Tool
    codec: MethodCodec
    streaming: bool
    invoke: Any  # the channel's multicallable (UnaryUnaryMultiCallable or UnaryStreamMultiCallable)


class GrpcBackend:
    """Tools from the methods of one gRPC server.

    Example:
        ```python
        backend = GrpcBackend("shop", GrpcSettings(channel=ChannelSettings(target="127.0.0.1:50051")))
        async with anyio.create_task_group() as tg:
            await backend.start(tg)  # discovers the methods, then watches the server
        ```
    """

    kind = KIND

    def __init__(self, name: str, settings: GrpcSettings) -> None:
        ToolId(name, "x")  # validates the namespace, with a clear message
        self._name = name
        self.settings = settings
        self._metadata = settings.metadata
        self._channel: grpc.aio.Channel | None = None
        self._methods: dict[str, _Method] = {}
        self._discovered: Discovered | None = None
        self._listener: Callable[[str], None] | None = None
        self._failure: DiscoveryError | None = None
        self._digest = ""
        self._lock = anyio.Lock()
        self._down: str | None = None
        self.refreshes = 0
        self.checks = 0

    @property
    def name(self) -> str:
        return self._name

    def down_reason(self) -> str | None:
        """Why the server cannot take calls now (None: it can, as far as the last check or call knows)."""
        return self._down

    @property
    def target(self) -> str:
        return self.settings.target

    @property
    def discovered(self) -> Discovered | None:
        """What the last successful discovery found."""
        return self._discovered

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_channel(self.settings.channel)
        return self._channel

    # --- discovery and monitoring ---------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Discover the methods, then watch the server in `task_group`. A failure (the server away, protos that do
        not compile) is noted, not raised: the backend serves no tools and says why until a check succeeds."""
        try:
            await self.discover()
        except DiscoveryError as exc:
            logger.warning("grpc %s: %s", self.name, exc.message)
        task_group.start_soon(self._monitor)

    async def discover(self) -> Discovered:
        """Read the methods again (reflection, protos or descriptor set) and swap the new tools in.

        Tells the registry when the tools changed.

        Raises:
            DiscoveryError: with the reason, written for the operator; the backend is then marked down.
        """
        async with self._lock:
            try:
                files, services = await self._files()
                digest = _digest(files, services)
                if digest == self._digest and self._discovered is not None:  # nothing new: keep pool and tools
                    self._down = self._failure = None
                    return self._discovered
                discovered = await anyio.to_thread.run_sync(self._build, files, services)
            except ConfigError as exc:  # a DiscoveryError, or TLS files that cannot be read
                failure = exc if isinstance(exc, DiscoveryError) else DiscoveryError(exc.message)
                self._down, self._failure = failure.message, failure
                raise failure from None
            self._digest = digest
            before = [m.tool for m in self._methods.values()]
            self._discovered = discovered
            self._methods = self._served(discovered)
            self._down = self._failure = None
            self.refreshes += 1
        if discovered.skipped:
            logger.info("grpc %s: client-streaming methods are not tools: %s", self.name, ", ".join(discovered.skipped))
        logger.info("grpc %s: %d methods from %s", self.name, len(self._methods), self._source())
        if before != [m.tool for m in self._methods.values()] and self._listener is not None:
            self._listener(self.name)
        return discovered

    def _source(self) -> str:
        if self.settings.reflection:
            return f"reflection at {self.target}"
        return "the descriptor set" if self.settings.descriptor_set else f"{len(self.settings.protos)} proto file(s)"

    def _build(self, files: list[FileDescriptorProto], services: list[str] | None) -> Discovered:
        settings = self.settings
        return build(
            files,
            services=services,
            include=settings.include,
            exclude=settings.exclude,
            descriptions=dict(settings.descriptions),
        )

    async def _files(self) -> tuple[list[FileDescriptorProto], list[str] | None]:
        """The proto files, and the services to serve (those reflection lists; None: every service in the files)."""
        settings = self.settings
        if not settings.reflection:
            files = []
            if settings.descriptor_set is not None:
                files = await anyio.to_thread.run_sync(read_descriptor_set, settings.descriptor_set)
            if settings.protos:
                files += await anyio.to_thread.run_sync(compile_protos, settings.protos, settings.import_paths)
            return files, None
        try:
            return await fetch_files(self.channel, metadata=self._metadata, timeout=self.settings.connect_timeout)
        except grpc.aio.AioRpcError as exc:
            raise DiscoveryError(f"reflection at {self.target} failed: {self._unreachable(exc)}") from None

    def _unreachable(self, exc: grpc.aio.AioRpcError) -> str:
        """Why the server could not be reached, for its operator."""
        said = exc.details() or exc.code().name
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            tls = "TLS" if self.settings.channel.tls is not None else "plaintext"
            return (
                f"no answer within {self.settings.connect_timeout:g} s ({said}); check that {self.target} is a gRPC "
                f"server and speaks {tls} as configured"
            )
        return f"{exc.code().name}: {said}"

    def _served(self, discovered: Discovered) -> dict[str, _Method]:
        """The tools of the discovered methods; one whose name cannot be a tool id is left out, and logged."""
        served = {}
        for method in discovered.methods:
            try:
                served[method.full_name] = self._method(method, discovered)
            except InvalidToolIdError as exc:
                logger.warning("grpc %s: method %s is not served: %s", self.name, method.full_name, exc.message)
        return served

    def _method(self, method: Any, discovered: Discovered) -> _Method:
        codec = MethodCodec(method, discovered.pool)
        streaming = bool(method.server_streaming)
        factory = self.channel.unary_stream if streaming else self.channel.unary_unary
        invoke = factory(
            codec.path, request_serializer=codec.serialize, response_deserializer=codec.response_class.FromString
        )
        return _Method(self._tool(method, discovered, streaming), codec, streaming, invoke)

    def _tool(self, method: Any, discovered: Discovered, streaming: bool) -> Tool:
        service = method.containing_service
        comment = discovered.comments.get(method.full_name)
        words = _WORD.sub(" ", method.name).lower()
        answer = f"a stream of {method.output_type.name}" if streaming else method.output_type.name
        origin = f"gRPC {method.full_name}: takes {method.input_type.name}, returns {answer}."
        service_note = discovered.comments.get(service.full_name)
        description = (
            f"{comment}\n\n{origin}" if comment else f"{words.capitalize()} ({service.name} service). {origin}"
        )
        if service_note:
            description += f" Service: {service_note}"
        return Tool(
            id=ToolId(self.name, method.full_name),
            description=description,
            title=f"{service.name}.{method.name}",
            input_schema=message_schema(method.input_type, discovered.comments),
            tags=("grpc", service.name, *(["streaming"] if streaming else [])),
            annotations=ToolAnnotations(title=f"{service.name}.{method.name}", open_world=True),
            backend_kind=KIND,
        )

    async def _monitor(self) -> None:
        while True:
            await anyio.sleep(self.settings.refresh_interval)
            try:
                await self.check()
            except Exception as exc:  # the watch goes on whatever one check meets (it runs in the gateway's group)
                self._down = f"{type(exc).__name__}: {exc}"
                logger.exception("grpc %s: the health check failed", self.name)

    async def check(self) -> HealthStatus:
        """Probe the server now: mark it down or up, and (with reflection, or after it came back) discover again."""
        self.checks += 1
        was_down = self._down is not None
        status = await self.health()
        if not status.healthy:
            if self._down != status.message:
                logger.warning("grpc %s is down: %s", self.name, status.message)
            self._down = status.message
            return status
        if was_down or self.settings.reflection or self._discovered is None:
            try:
                await self.discover()
            except DiscoveryError as exc:
                logger.warning("grpc %s: %s", self.name, exc.message)
                return HealthStatus(healthy=False, message=exc.message)
        if was_down:
            logger.info("grpc %s is back", self.name)
            if self._listener is not None:
                self._listener(self.name)
        return status

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    # --- the Backend protocol -------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        if self._discovered is None:
            if self._failure is not None:  # the last attempt failed: the monitor tries again, not every listing
                raise self._failure
            await self.discover()  # a DiscoveryError (a ConfigError) names what to fix; the registry reports it
        return [m.tool for m in self._methods.values()]

    async def get_tool(self, name: str) -> Tool | None:
        method = self._methods.get(name)
        return method.tool if method else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ToolOutput:
        method = self._methods.get(name)  # this definition serves the whole call, whatever refreshes meanwhile
        if method is None:
            raise UnknownToolError(f"{self.name}:{name}", [f"{self.name}:{n}" for n in list(self._methods)[:3]])
        request = method.codec.request(args)
        timeout = ctx.timeout or self.settings.timeout
        try:
            if method.streaming:
                data = await self._stream(method, request, timeout, ctx)
            else:
                data = method.codec.to_json(await method.invoke(request, metadata=self._metadata, timeout=timeout))
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, method) from None
        if self._down is not None and self._failure is None:  # it answered: whatever marked it down has passed
            self._down = None
        # One line of JSON: the C encoder (an indented dump runs json's Python encoder, a third of the backend's
        # own time on a small answer), and fewer tokens for the model that reads it.
        return ToolOutput(content=(mcp_types.TextContent(text=json.dumps(data, ensure_ascii=False)),), structured=data)

    async def _stream(self, method: _Method, request: Any, timeout: float, ctx: CallContext) -> dict[str, Any]:
        cap, byte_cap = self.settings.max_stream_messages, self.settings.channel.max_message_bytes
        messages: list[dict[str, Any]] = []
        call = method.invoke(request, metadata=self._metadata, timeout=timeout)
        truncated: str | None = None
        size = 0
        try:
            async for response in call:
                messages.append(method.codec.to_json(response))
                size += response.ByteSize()
                await ctx.report_progress(len(messages), None, f"{len(messages)} message(s) from {method.tool.name}")
                if len(messages) >= cap:
                    truncated = f"the stream was stopped after {cap} messages (max_stream_messages)"
                elif size >= byte_cap:
                    truncated = (
                        f"the stream was stopped after {size} bytes in {len(messages)} messages (max_message_bytes)"
                    )
                if truncated:
                    break
        except grpc.aio.AioRpcError as exc:
            error = self._error(exc, method)
            if messages:
                error.message += f" ({len(messages)} message(s) had arrived before; none are returned.)"
                error.details["messages_received"] = len(messages)
            raise error from None
        finally:
            call.cancel()
        data: dict[str, Any] = {"messages": messages, "count": len(messages), "truncated": truncated is not None}
        if truncated:
            data["note"] = truncated
        return data

    def _error(self, exc: grpc.aio.AioRpcError, method: _Method) -> ApertureError:
        pool = self._discovered.pool if self._discovered is not None else None
        error = grpc_error(exc, method=method.codec.method.full_name, target=self.target, pool=pool)
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            self._down = f"{exc.code().name}: {exc.details() or 'unreachable'}"
        return error

    async def health(self) -> HealthStatus:
        """grpc.health.v1's answer for the whole server, else (where it is not served) the channel's connectivity."""
        started = time.perf_counter()
        try:
            channel = self.channel
        except ConfigError as exc:  # TLS files that cannot be read
            return HealthStatus(healthy=False, message=exc.message)
        check = channel.unary_unary(
            _HEALTH_PATH,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            answer = await check(
                health_pb2.HealthCheckRequest(service=""),
                metadata=self._metadata,
                timeout=self.settings.connect_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                return HealthStatus(healthy=False, message=self._unreachable(exc), latency_ms=_ms(started))
            return await self._connectivity(started)
        serving = answer.status == health_pb2.HealthCheckResponse.SERVING
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return HealthStatus(healthy=serving, message=f"grpc.health.v1: {state}", latency_ms=_ms(started))

    async def _connectivity(self, started: float) -> HealthStatus:
        channel = self.channel
        state = channel.get_state(try_to_connect=True)
        with anyio.move_on_after(self.settings.connect_timeout):
            while state != grpc.ChannelConnectivity.READY:
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
        healthy = state == grpc.ChannelConnectivity.READY
        return HealthStatus(healthy=healthy, message=f"channel {state.name.lower()}", latency_ms=_ms(started))

    async def aclose(self) -> None:
        self._listener = None
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace=None)


def _digest(files: list[FileDescriptorProto], services: list[str] | None) -> str:
    """A fingerprint of what discovery found: the same files and services need no new pool."""
    hashed = hashlib.sha256(repr(services).encode())
    for proto in sorted(files, key=lambda f: f.name):
        hashed.update(proto.SerializeToString(deterministic=True))
    return hashed.hexdigest()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
