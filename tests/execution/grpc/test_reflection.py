"""Server reflection that does not send every imported file: the well-known types' files then come from protobuf's
own package; any other missing file stops discovery with a message naming it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from grpc_shop import POOL, ShopServer, WithholdingReflection

from tests.execution.grpc.conftest import gateway_client, shop_config
from tests.execution.grpc.test_gateway import describe
from tests.mcp_helpers import run, text_of

pytestmark = pytest.mark.anyio

WELL_KNOWN = ("google/protobuf/timestamp.proto", "google/protobuf/duration.proto")
NAMES = ["shop.v1.Inventory", "grpc.reflection.v1alpha.ServerReflection"]


def serve(withheld: tuple[str, ...], *, empty: bool = False) -> tuple[ShopServer, WithholdingReflection]:
    reflector = WithholdingReflection(NAMES, POOL, withheld, empty=empty)
    return ShopServer(reflector=reflector).start(), reflector


@pytest.fixture(params=[False, True], ids=["not-found", "empty-answer"])
def stingy_shop(request: pytest.FixtureRequest) -> Iterator[tuple[ShopServer, WithholdingReflection]]:
    server, reflector = serve(WELL_KNOWN, empty=request.param)
    yield server, reflector
    server.stop()


async def test_well_known_files_the_server_does_not_send_come_from_protobuf(
    stingy_shop: tuple[ShopServer, WithholdingReflection],
) -> None:
    server, reflector = stingy_shop
    async with gateway_client(shop_config(server.target)) as (gateway, client):
        assert "shop:shop.v1.Inventory.Echo" in gateway.registry.snapshot.tools, gateway.backend_failures()
        assert set(WELL_KNOWN) <= set(reflector.asked)  # it asked for them, and got nothing
        schema = (await describe(client, "shop:shop.v1.Inventory.Echo"))["input_schema"]
        assert schema["properties"]["when"]["format"] == "date-time"
        assert schema["properties"]["howLong"]["pattern"].endswith("s$")
        result = await run(client, "shop:shop.v1.Inventory.Echo", {"when": "2024-05-01T12:00:00Z", "howLong": "2s"})
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"] == {"when": "2024-05-01T12:00:00Z", "howLong": "2s"}


async def test_a_missing_file_of_the_servers_own_stops_discovery_and_names_it() -> None:
    server, _ = serve(("shop/v1/common.proto",))
    try:
        async with gateway_client(shop_config(server.target)) as (gateway, _):
            assert not gateway.registry.snapshot.tools
            failure = gateway.backend_failures()["shop"]
    finally:
        server.stop()
    assert "reflection has no file shop/v1/common.proto, which the server's protos import" in failure


class NoFileFor(WithholdingReflection):
    """Reflection that lists `services` but answers "Symbol not found" for them, as grpc++ does for its built-in
    health service (served and listed, but with no descriptor in its pool)."""

    def __init__(self, services: tuple[str, ...]) -> None:
        super().__init__([*NAMES, *services], POOL, ())
        self.services = services

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        if fully_qualified_name in self.services:
            error = reflection_pb2.ErrorResponse(
                error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message="Symbol not found."
            )
            return reflection_pb2.ServerReflectionResponse(error_response=error, original_request=request)
        return super()._file_containing_symbol(request, fully_qualified_name)


async def test_a_listed_grpc_service_without_a_file_is_passed_over_but_one_of_the_servers_own_is_named() -> None:
    server = ShopServer(reflector=NoFileFor(("grpc.health.v1.Health",))).start()
    try:
        async with gateway_client(shop_config(server.target)) as (gateway, client):
            assert "shop:shop.v1.Inventory.GetItem" in gateway.registry.snapshot.tools, gateway.backend_failures()
            result = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-1"})
            assert not result.is_error, text_of(result)
    finally:
        server.stop()
    server = ShopServer(reflector=NoFileFor(("shop.v1.Admin",))).start()
    try:
        async with gateway_client(shop_config(server.target)) as (gateway, _):
            failure = gateway.backend_failures()["shop"]
    finally:
        server.stop()
    assert "reflection lists service shop.v1.Admin but has no file for it: Symbol not found." in failure
