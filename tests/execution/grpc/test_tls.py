"""TLS towards a gRPC server, with a CA the test makes: a CA file, a client certificate for mutual TLS, and what
the operator is told when the certificates do not fit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from grpc_shop import ServerTls, ShopServer

from tests.execution.grpc.conftest import Pki, gateway_client, shop_config, until
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio

GET = "shop:shop.v1.Inventory.GetItem"


@pytest.fixture(scope="module")
def tls_shop(pki: Pki) -> Iterator[ShopServer]:
    server = ShopServer(tls=ServerTls(pki.server_cert.read_bytes(), pki.server_key.read_bytes())).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_shop(pki: Pki) -> Iterator[ShopServer]:
    tls = ServerTls(pki.server_cert.read_bytes(), pki.server_key.read_bytes(), client_ca=pki.ca.read_bytes())
    server = ShopServer(tls=tls).start()
    yield server
    server.stop()


async def test_tls_with_the_servers_ca_discovers_and_calls(tls_shop: ShopServer, pki: Pki) -> None:
    async with gateway_client(shop_config(tls_shop.target, tls={"ca_file": str(pki.ca)})) as (gateway, client):
        assert GET in gateway.registry.snapshot.tools
        result = await run(client, GET, {"sku": "SKU-1"})
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"]["name"] == "red kettle"


async def test_the_system_roots_do_not_trust_a_private_ca(tls_shop: ShopServer) -> None:
    async with gateway_client(shop_config(tls_shop.target, tls=True, connect_timeout=3)) as (gateway, _):
        failure = gateway.backend_failures()["shop"]
        assert f"reflection at {tls_shop.target} failed: UNAVAILABLE" in failure


async def test_plaintext_to_a_tls_server_is_reported(tls_shop: ShopServer) -> None:
    async with gateway_client(shop_config(tls_shop.target, connect_timeout=3)) as (gateway, _):
        assert f"reflection at {tls_shop.target} failed" in gateway.backend_failures()["shop"]


async def test_mutual_tls_sends_the_client_certificate(mtls_shop: ShopServer, pki: Pki) -> None:
    tls = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    async with gateway_client(shop_config(mtls_shop.target, tls=tls)) as (_, client):
        result = await run(client, GET, {"sku": "SKU-3"})
        assert result.structured_content["result"]["name"] == "teapot"


async def test_mutual_tls_without_a_client_certificate_is_refused(mtls_shop: ShopServer, pki: Pki) -> None:
    config = shop_config(mtls_shop.target, tls={"ca_file": str(pki.ca)}, connect_timeout=3)
    async with gateway_client(config) as (gateway, _):
        assert f"reflection at {mtls_shop.target} failed" in gateway.backend_failures()["shop"]


async def test_the_server_name_can_differ_from_the_target_host(tls_shop: ShopServer, pki: Pki) -> None:
    target = f"localhost:{tls_shop.port}"
    tls = {"ca_file": str(pki.ca), "server_name": "localhost"}
    async with gateway_client(shop_config(target, tls=tls)) as (_, client):
        assert not (await run(client, GET, {"sku": "SKU-2"})).is_error


async def test_a_ca_file_that_is_not_pem_is_reported(tls_shop: ShopServer, pki: Pki) -> None:
    bogus = pki.directory / "bogus.pem"
    bogus.write_text("not a certificate")
    config = shop_config(tls_shop.target, tls={"ca_file": str(bogus)}, refresh_interval=0.05)
    async with gateway_client(config) as (gateway, client):
        assert "is not a PEM file" in gateway.backend_failures()["shop"]
        backend: Any = gateway.registry.get("shop")
        await until(gateway, lambda: backend.checks >= 3)  # the health checks meet it too, and go on
        assert "is not a PEM file" in backend.down_reason()
        assert not (await client.call_tool("search_tools", {"query": "anything"})).is_error


def test_a_client_certificate_without_its_key_is_a_configuration_error(pki: Pki) -> None:
    from aperture.config import parse_config
    from aperture.model import ConfigError

    with pytest.raises(ConfigError, match="give both 'cert_file' and 'key_file'"):
        parse_config(shop_config("127.0.0.1:1", tls={"cert_file": str(pki.client_cert)}))
