"""Outbound HTTP for capabilities: one pooled client per backend that refuses private destinations.

The check runs where the connection is made: the host is resolved once, every address it resolves to is checked,
and the connection goes to a checked address. A name that resolves to a public address for the check and to a
private one for the connection (DNS rebinding) therefore cannot get through, and every redirect hop is checked
the same way, since each new connection passes here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateNetworkError(Exception):
    """A request to a private, loopback, link-local or otherwise non-public address was refused."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"refused to connect to {host} ({address}): it is a private, loopback or link-local address. "
            "Capabilities reach public APIs only, unless the operator sets allow_private_networks: true on the "
            "backend"
        )
        self.host = host
        self.address = address


def is_public(address: IpAddress) -> bool:
    """True for a globally routable unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def public_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, all checked to be public.

    Raises:
        PrivateNetworkError: when any of them is not public (one bad address is enough to refuse).
        httpcore2.ConnectError: when the name does not resolve.
    """
    try:
        literal: IpAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if not is_public(literal):
            raise PrivateNetworkError(host, str(literal))
        return [str(literal)]
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for text in addresses:
        if not is_public(ipaddress.ip_address(text.split("%", 1)[0])):
            raise PrivateNetworkError(host, text)
    return addresses


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        addresses = await public_addresses(host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise PrivateNetworkError(path, "unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def capability_client(*, allow_private_networks: bool, max_connections: int = 100) -> httpx2.AsyncClient:
    """The backend's pooled client: no redirects followed by itself, no proxies from the environment."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max(10, max_connections // 5))
    transport = httpx2.AsyncHTTPTransport(limits=limits, trust_env=False)
    if not allow_private_networks:
        # httpx2 builds its pool without a way to pass a network backend: swap in an equal pool that has one.
        old = transport._pool
        transport._pool = httpcore2.AsyncConnectionPool(
            ssl_context=old._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(),
        )
    return httpx2.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
