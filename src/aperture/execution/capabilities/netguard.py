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
from contextlib import suppress
from typing import Any

import anyio
import httpcore2
import httpx2

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateNetworkError(Exception):
    """A request to a private, loopback, link-local or otherwise non-public address was refused."""

    def __init__(self, host: str, address: str) -> None:
        shown = address
        with suppress(ValueError):
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
            embedded = embedded_ipv4(parsed) if isinstance(parsed, ipaddress.IPv6Address) else None
            if embedded:
                shown = f"{address}, which leads to {' and '.join(map(str, embedded))}"
        super().__init__(
            f"refused to connect to {host} ({shown}): it is a private, loopback or link-local address. "
            "Capabilities reach public APIs only, unless the operator sets allow_private_networks: true on the "
            "backend"
        )
        self.host = host
        self.address = address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_LOCAL_NAT64_LENGTHS = (48, 56, 64, 96)
"""Prefix lengths RFC 6052 allows that fit inside 64:ff9b:1::/48; each puts the IPv4 address elsewhere."""


def is_public(address: IpAddress) -> bool:
    """True for a globally routable unicast address.

    An IPv6 address that carries an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
    `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`,
    Teredo `2001::/32`) reaches that IPv4 host in the end, so the IPv4 address is what is judged.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return bool(embedded) and all(_is_public_v4(v4) for v4 in embedded)
    return address.is_global and not address.is_multicast


def _is_public_v4(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not address.is_multicast


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address of a translation or tunnelling form leads to; None for other forms.

    An empty list means the address is of such a form but malformed (nothing to judge: not public).
    Teredo gives two: its server and its (de-obfuscated) client.
    """
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64 or address in _SIIT or address in _IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address in _TEREDO:
        assert address.teredo is not None
        return list(address.teredo)
    if address in _NAT64_LOCAL:
        return [v4 for length in _LOCAL_NAT64_LENGTHS if (v4 := _rfc6052(int(address), length)) is not None]
    return None


def _rfc6052(value: int, prefix_length: int) -> ipaddress.IPv4Address | None:
    """The IPv4 address embedded after a NAT64 prefix of this length (RFC 6052, section 2.2), or None when
    the address is not well formed for it (bits 64-71 and the suffix must be zero)."""
    bits = f"{value:0128b}"
    if prefix_length == 96:
        return ipaddress.IPv4Address(int(bits[96:], 2))
    if bits[64:72] != "0" * 8:
        return None
    after_prefix = bits[prefix_length:64] + bits[72:]  # the IPv4 address skips bits 64-71
    if after_prefix[32:].strip("0"):
        return None
    return ipaddress.IPv4Address(int(after_prefix[:32], 2))


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
