"""`kind: grpc`: a gRPC server whose unary and server-streaming methods become tools (docs/grpc.md).

The model loads without grpcio; building the backend needs the `grpc` extra, and says so when it is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from aperture.config.kinds.registry import BackendKind, BackendSettings, BuildContext, Section
from aperture.execution import Backend
from aperture.execution.grpc import INSTALL_HINT, KIND, ChannelSettings, GrpcSettings, TlsFiles, missing_modules
from aperture.model import ConfigError

_TARGET = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_METADATA_KEY = re.compile(r"^[0-9a-z_.-]+$")


class GrpcTlsConfig(Section):
    """TLS towards the server: the system's roots unless `ca_file` names others; a client certificate on request."""

    ca_file: str | None = Field(None, description="PEM file of the CA(s) to trust, relative to the config file.")
    cert_file: str | None = Field(None, description="PEM client certificate (mutual TLS); needs key_file.")
    key_file: str | None = Field(None, description="PEM private key of cert_file.")
    server_name: str | None = Field(
        None, description="Name to check the server's certificate against (default: the target's host)."
    )

    @model_validator(mode="after")
    def _pair(self) -> GrpcTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both 'cert_file' and 'key_file' (a client certificate and its key), or neither")
        return self


class GrpcBackendConfig(BackendSettings):
    """A gRPC server whose unary and server-streaming methods become tools (see docs/grpc.md)."""

    kind: Literal["grpc"]
    target: str = Field(description="host:port of the server (IPv6 as [::1]:port).")
    tls: GrpcTlsConfig | bool = Field(
        False, description="false: plaintext; true: TLS with the system's roots; a mapping: ca_file, cert_file, ..."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="Metadata (headers) sent with every call; ${VAR} values are secrets, never shown.",
    )
    reflection: bool | None = Field(
        None,
        description="Discover methods by server reflection (default: yes unless protos or descriptor_set are given).",
    )
    protos: list[str] = Field(
        default_factory=list, description=".proto files to compile at start (grpcio-tools), relative to this file."
    )
    import_paths: list[str] = Field(
        default_factory=list,
        description="Directories the protos and their imports are found in, relative to this file (default: the file's "
        "own directory).",
    )
    descriptor_set: str | None = Field(
        None, description="A FileDescriptorSet (protoc --descriptor_set_out --include_imports), relative to this file."
    )
    include: list[str] = Field(
        default_factory=list,
        description="Globs over package.Service or package.Service.Method; only matching methods become tools.",
    )
    exclude: list[str] = Field(default_factory=list, description="Globs of methods to leave out (win over include).")
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="package.Service.Method -> a description that replaces the derived one."
    )
    timeout: float | None = Field(None, gt=0, description="Seconds a call may take (default: execution.timeout).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to reach the server for reflection and health.")
    keepalive: float | None = Field(
        30.0, gt=0, description="Seconds between keepalive pings on an idle connection (null: none)."
    )
    refresh_interval: float = Field(
        30.0, gt=0, description="Seconds between health checks and reflection refreshes (new methods)."
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest response message taken; larger ones fail the call."
    )
    max_stream_messages: int = Field(
        1000, ge=1, description="Server-streaming: messages kept in the result; the stream is stopped past it."
    )

    @field_validator("target")
    @classmethod
    def _valid_target(cls, value: str) -> str:
        match = _TARGET.match(value)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"target '{value}' is not host:port (e.g. 127.0.0.1:50051, [::1]:50051)")
        return value

    @field_validator("metadata")
    @classmethod
    def _valid_metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _METADATA_KEY.match(key) or key.startswith("grpc-"):
                raise ValueError(
                    f"metadata key '{key}' is not allowed: use lower-case letters, digits, '-', '_' and '.', "
                    "and no 'grpc-' prefix (gRPC reserves it)"
                )
            if key.endswith("-bin"):
                raise ValueError(f"metadata key '{key}': binary ('-bin') metadata is not supported; use a text key")
        return value

    @model_validator(mode="after")
    def _some_source(self) -> GrpcBackendConfig:
        if self.reflection is False and not self.protos and self.descriptor_set is None:
            raise ValueError(
                "reflection is off and neither 'protos' nor 'descriptor_set' is given: nothing says which methods "
                "the server has; give .proto files, a descriptor set, or turn reflection on"
            )
        return self

    @property
    def uses_reflection(self) -> bool:
        """Whether methods are discovered by server reflection (else from protos / the descriptor set)."""
        if self.reflection is not None:
            return self.reflection
        return not self.protos and self.descriptor_set is None

    def settings(self, resolve: Callable[[str], Path], default_timeout: float) -> GrpcSettings:
        """The backend's settings, paths resolved with `resolve` (against the configuration file's directory)."""
        tls = None
        if self.tls is True:
            tls = TlsFiles()
        elif self.tls is not False:
            tls = TlsFiles(
                ca_file=resolve(self.tls.ca_file) if self.tls.ca_file else None,
                cert_file=resolve(self.tls.cert_file) if self.tls.cert_file else None,
                key_file=resolve(self.tls.key_file) if self.tls.key_file else None,
                server_name=self.tls.server_name,
            )
        channel = ChannelSettings(
            target=self.target, tls=tls, keepalive=self.keepalive, max_message_bytes=self.max_message_bytes
        )
        return GrpcSettings(
            channel=channel,
            metadata=tuple(self.metadata.items()),
            reflection=self.uses_reflection,
            protos=tuple(resolve(p) for p in self.protos),
            import_paths=tuple(resolve(p) for p in self.import_paths) or (resolve("."),),
            descriptor_set=resolve(self.descriptor_set) if self.descriptor_set else None,
            include=tuple(self.include),
            exclude=tuple(self.exclude),
            descriptions=dict(self.descriptions),
            timeout=self.timeout or default_timeout,
            connect_timeout=self.connect_timeout,
            refresh_interval=self.refresh_interval,
            max_stream_messages=self.max_stream_messages,
        )


def build_grpc(spec: GrpcBackendConfig, context: BuildContext) -> Backend:
    """The backend of one gRPC server (it discovers the methods when started).

    Raises:
        ConfigError: the `grpc` extra is not installed.
    """
    missing = missing_modules()
    if missing:
        raise ConfigError(
            f"backend '{spec.name}' is of kind grpc, which needs the grpc extra ({', '.join(missing)} cannot be "
            f"imported); install it with: {INSTALL_HINT}"
        )
    from aperture.execution.grpc.backend import GrpcBackend

    return GrpcBackend(spec.name, spec.settings(context.resolve, context.config.execution.timeout))


GRPC = BackendKind(KIND, GrpcBackendConfig, build_grpc)
