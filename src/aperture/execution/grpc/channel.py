"""The one channel a gRPC backend opens: plaintext or TLS (system roots, a CA file, a client certificate), keepalive
pings, and a cap on the size of answers."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio

from aperture.execution.grpc.settings import ChannelSettings, TlsFiles
from aperture.model import ConfigError


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Channel credentials from PEM files (None for a file not given: the system's roots, no client certificate).

    Raises:
        ConfigError: for a file that cannot be read, or one that is not PEM.
    """
    ca = _read(tls.ca_file, "CA file") if tls.ca_file else None
    cert = _read(tls.cert_file, "client certificate") if tls.cert_file else None
    key = _read(tls.key_file, "client key") if tls.key_file else None
    for data, path in ((ca, tls.ca_file), (cert, tls.cert_file), (key, tls.key_file)):
        if data is not None and b"-----BEGIN " not in data:
            raise ConfigError(f"{path} is not a PEM file (it has no '-----BEGIN' line)")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def open_channel(settings: ChannelSettings) -> grpc.aio.Channel:
    """A `grpc.aio` channel (it connects lazily, on the first call, and reconnects by itself)."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Reconnect quickly after the server comes back (the default backoff reaches two minutes).
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.enable_retries", 0),
    ]
    if settings.keepalive is not None:
        options += [
            ("grpc.keepalive_time_ms", int(settings.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    if settings.tls is None:
        return grpc.aio.insecure_channel(settings.target, options=options)
    if settings.tls.server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls.server_name))
    return grpc.aio.secure_channel(settings.target, credentials(settings.tls), options=options)
