"""The network guard judges the IPv4 address that an IPv6 translation or tunnelling form leads to."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from aperture.execution.capabilities.netguard import PrivateNetworkError, is_public, public_addresses

pytestmark = pytest.mark.anyio

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

EMBEDDED = {
    "private-10": ("10.0.0.1", False),
    "private-192.168": ("192.168.1.1", False),
    "loopback": ("127.0.0.1", False),
    "link-local": ("169.254.1.1", False),
    "metadata": ("169.254.169.254", False),
    "cgnat": ("100.64.0.1", False),
    "public": ("8.8.8.8", True),
}
TEREDO_SERVER = V4("65.54.227.120")  # a public Teredo server


def _teredo(client: V4, server: V4 = TEREDO_SERVER) -> V6:
    # 2001:0000:<server>:<flags>:<port ^ 0xffff>:<client ^ 0xffffffff>
    return V6((0x20010000 << 96) | (int(server) << 64) | (0x8000 << 48) | (0xFFFF << 32) | (int(client) ^ 0xFFFFFFFF))


FORMS: dict[str, Callable[[V4], V6]] = {
    "ipv4-mapped ::ffff:a.b.c.d": lambda v4: V6(f"::ffff:{v4}"),
    "ipv4-compatible ::a.b.c.d": lambda v4: V6(f"::{v4}"),
    "siit ::ffff:0:a.b.c.d": lambda v4: V6(f"::ffff:0:{v4}"),
    "nat64 64:ff9b::/96": lambda v4: V6(f"64:ff9b::{v4}"),
    "local nat64 64:ff9b:1::/48 (as /96)": lambda v4: V6(f"64:ff9b:1::{v4}"),
    "6to4 2002::/16": lambda v4: V6((0x2002 << 112) | (int(v4) << 80) | 1),
    "teredo client 2001::/32": _teredo,
    "teredo server 2001::/32": lambda v4: _teredo(V4("8.8.4.4"), server=v4),
}

CASES = [
    pytest.param(make(V4(v4)), public, id=f"{form}-{label}-{v4}")
    for form, make in FORMS.items()
    for label, (v4, public) in EMBEDDED.items()
]


@pytest.mark.parametrize(("address", "public"), CASES)
def test_an_ipv6_form_that_embeds_an_ipv4_address_is_judged_by_that_address(address: V6, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1:a00:1::",  # 10.0.0.1 in the /48 layout of RFC 6052
        "64:ff9b:1:808:8:800::",  # 8.8.8.8 in the /48 layout: also readable as /56, /64, /96: ambiguous
        "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",  # no well-formed layout at all
        "::",
        "::1",
        "2002::1",  # 6to4 of 0.0.0.0
    ],
    ids=[
        "local-nat64-48-private",
        "local-nat64-48-ambiguous",
        "local-nat64-malformed",
        "unspecified",
        "loopback",
        "6to4-zero",
    ],
)
def test_ambiguous_or_malformed_embeddings_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["2606:4700:4700::1111", "2001:4860:4860::8888", "8.8.8.8"],
    ids=["cloudflare-v6", "google-v6", "plain-v4"],
)
def test_ordinary_public_addresses_stay_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host",
    ["[::ffff:0:127.0.0.1]", "[64:ff9b::169.254.169.254]", "[2002:a9fe:a9fe::1]", "[::127.0.0.1]"],
    ids=["siit-loopback", "nat64-metadata", "6to4-metadata", "ipv4-compatible-loopback"],
)
async def test_a_literal_host_in_an_embedding_form_is_refused_with_the_fix_named(host: str) -> None:
    with pytest.raises(PrivateNetworkError) as caught:
        await public_addresses(host, 80)
    assert "allow_private_networks" in str(caught.value) and host in str(caught.value)
    assert "which leads to" in str(caught.value)
