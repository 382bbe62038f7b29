"""Fixtures of the gRPC backend tests: the shop server of tests/fixtures/grpc_shop.py (one per module, on 127.0.0.1)
and a gateway in front of it, driven with the official MCP client."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_shop import PROTOS, ShopServer
from mcp import Client

from aperture.config import parse_config
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    """The shop with reflection and the health service, both of its services."""
    server = ShopServer(services=("Inventory", "Admin")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dark_shop() -> Iterator[ShopServer]:
    """The shop without reflection and without the health service."""
    server = ShopServer(reflection_on=False, health_on=False, services=("Inventory", "Admin")).start()
    yield server
    server.stop()


def shop_config(target: str, **backend: Any) -> dict[str, Any]:
    """A configuration document with one grpc backend named `shop`; `backend` adds to (or overrides) its entry."""
    extra = {k.removeprefix("gw_"): backend.pop(k) for k in list(backend) if k.startswith("gw_")}
    return {
        "backends": [{"name": "shop", "kind": "grpc", "target": target, **backend}],
        "search": {"strategy": "bm25"},
        **extra,
    }


@asynccontextmanager
async def gateway_client(
    document: dict[str, Any], *, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Gateway, Client]]:
    """A gateway on `document` (relative paths resolve in tests/fixtures/grpc) and the MCP client on it."""
    config = parse_config(document, base_dir=PROTOS, env=env)
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as client:
        yield gateway, client


async def until(gateway: Gateway, condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for catalog changes until `condition()` holds (checked again every 50 ms for state that is not the
    catalog, such as a backend marked down)."""
    changed = anyio.Event()

    def wake() -> None:
        changed.set()

    gateway.on_tools_changed(wake)
    with anyio.fail_after(within):
        while not condition():
            with anyio.move_on_after(0.05):
                await changed.wait()
            changed = anyio.Event()


@dataclass(frozen=True)
class Pki:
    """A test CA, a server certificate for 127.0.0.1 and localhost it signed, and a client certificate; PEM files
    in `directory`."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    **kw: Any,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if kw.get("san"):
        builder = builder.add_extension(x509.SubjectAlternativeName(kw["san"]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """Write a CA, a server certificate (127.0.0.1, localhost) and a client certificate into `directory`."""
    ca_key = _key()
    ca = _certificate("Aperture test CA", ca_key, None)
    ca_name = ca.subject
    server_key, client_key = _key(), _key()
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _certificate("localhost", server_key, (ca_name, ca_key), san=san)
    client = _certificate("aperture-gateway", client_key, (ca_name, ca_key))
    files = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "server_cert": server.public_bytes(serialization.Encoding.PEM),
        "server_key": _pem_key(server_key),
        "client_cert": client.public_bytes(serialization.Encoding.PEM),
        "client_key": _pem_key(client_key),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(data)
    return Pki(directory, **paths)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
