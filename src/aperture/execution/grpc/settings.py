"""What a gRPC backend is told: where the server is, how to reach it, where its methods come from (runtime values,
paths already resolved; the configuration entry makes them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KIND = "grpc"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """TLS towards the server: None for a file not given (the system's roots; no client certificate)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSettings:
    """Everything that shapes the channel (none of it secret: metadata travels per call)."""

    target: str
    tls: TlsFiles | None = None
    keepalive: float | None = 30.0
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSettings:
    """How a gRPC backend reaches its server, finds its methods and calls them."""

    channel: ChannelSettings
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Sent with every call; may hold credentials, so it stays out of the repr."""
    reflection: bool = True
    protos: tuple[Path, ...] = ()
    import_paths: tuple[Path, ...] = ()
    descriptor_set: Path | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    refresh_interval: float = 30.0
    max_stream_messages: int = 1000

    @property
    def target(self) -> str:
        return self.channel.target
