"""gRPC methods behind the gateway, seen through the official MCP client: search finds them, describe shows the
schema derived from the request message, run_tool calls the server (unary and server-streaming)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from grpc_shop import ShopServer

from tests.execution.grpc.conftest import gateway_client, shop_config
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

PROTOS = {"reflection": False, "protos": ["shop/v1/shop.proto"]}
METHODS = [
    "shop:shop.v1.Admin.Purge",
    "shop:shop.v1.Inventory.Blob",
    "shop:shop.v1.Inventory.CountTree",
    "shop:shop.v1.Inventory.Echo",
    "shop:shop.v1.Inventory.Fail",
    "shop:shop.v1.Inventory.GetItem",
    "shop:shop.v1.Inventory.SearchItems",
    "shop:shop.v1.Inventory.Ticks",
]


async def search(client: Any, query: str, limit: int = 3) -> list[str]:
    result = await client.call_tool("search_tools", {"query": query, "limit": limit})
    return [hit["id"] for hit in result.structured_content["tools"]]


async def describe(client: Any, tool_id: str, level: str = "schema") -> dict[str, Any]:
    result = await client.call_tool("describe_tool", {"tool_id": tool_id, "detail_level": level})
    assert not result.is_error, text_of(result)
    data: dict[str, Any] = result.structured_content
    return data


async def test_reflection_turns_every_unary_and_server_streaming_method_into_a_tool(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        listed = await client.call_tool("list_tools", {"namespace": "shop"})
        ids = sorted(t["id"] for t in listed.structured_content["tools"])
        assert ids == METHODS  # Upload (client streaming) is not a tool, nor gRPC's own health service
        # Reflection carries no comments: the description rests on the names.
        doc = await describe(client, "shop:shop.v1.Inventory.GetItem", "full")
        assert doc["description"].startswith("Get item (Inventory service).")
        assert await search(client, "search items", 1) == ["shop:shop.v1.Inventory.SearchItems"]


async def test_search_finds_methods_by_the_meaning_of_their_proto_comments(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target, **PROTOS, gw_search={"strategy": "auto"})) as (gw, client):
        await anyio.to_thread.run_sync(gw.index.wait_ready, 60)
        assert (await search(client, "how many units of a product are left in the warehouse"))[0] == (
            "shop:shop.v1.Inventory.GetItem"
        )
        assert (await search(client, "wipe all products"))[0] == "shop:shop.v1.Admin.Purge"
        doc = await describe(client, "shop:shop.v1.Inventory.GetItem", "full")
        assert doc["description"].startswith("Look up one product in the warehouse by its stock-keeping unit")


async def test_describe_shows_the_schema_derived_from_the_request_message(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target, **PROTOS)) as (_, client):
        schema = (await describe(client, "shop:shop.v1.Inventory.Echo"))["input_schema"]
        props = schema["properties"]
        assert props["small"] == {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
        assert props["unsigned"]["minimum"] == 0 and props["unsigned"]["maximum"] == 2**32 - 1
        assert props["color"]["enum"] == ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"]
        assert props["color"]["description"].startswith("The colour of a product.")  # the enum's comment
        assert props["price"]["properties"]["cents"]["description"] == "Amount in cents."  # an imported file's
        assert props["tags"] == {"type": "array", "items": {"type": "string"}}
        assert props["counts"]["additionalProperties"]["type"] == "integer"  # map<string, int32>
        assert props["byId"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}  # map<int32, Money>
        assert props["data"]["contentEncoding"] == "base64"
        assert props["when"]["format"] == "date-time" and props["howLong"]["pattern"].endswith("s$")
        assert props["extra"]["type"] == "object" and "type" not in props["anything"]  # Struct, Value
        assert props["nullableCount"]["type"] == ["integer", "null"]
        assert "optional" in props["maybe"]["description"]
        assert [branch.get("required") for branch in schema["oneOf"]] == [["byName"], ["byNumber"], None]
        assert schema["additionalProperties"] is False
        tree = (await describe(client, "shop:shop.v1.Inventory.CountTree"))["input_schema"]
        assert tree["properties"]["children"]["items"] == {"$ref": "#/$defs/shop.v1.Category"}
        assert tree["$defs"]["shop.v1.Category"]["properties"]["parentHint"] == {"$ref": "#/$defs/shop.v1.Category"}


async def test_run_returns_the_response_message_as_structured_content(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        result = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-1"})
        assert not result.is_error, text_of(result)
        assert result.structured_content["result"] == {
            "sku": "SKU-1",
            "name": "red kettle",
            "quantity": 4,
            "price": {"currency": "EUR", "cents": "2999"},
            "color": "COLOR_RED",
        }


async def test_every_json_shape_survives_the_round_trip_through_the_server(shop: ShopServer) -> None:
    sent = {
        "small": -5,
        "unsigned": 4_000_000_000,
        "big": "9007199254740993",
        "ratio": 0.25,
        "flag": True,
        "text": "héllo",
        "data": "aGVsbG8=",
        "color": "COLOR_GREEN",
        "price": {"currency": "EUR", "cents": 5},
        "tags": ["a", "b"],
        "prices": [{"currency": "USD", "cents": 1}],
        "counts": {"x": 1},
        "byId": {"7": {"currency": "GBP"}},
        "byNumber": 3,
        "maybe": 0,
        "when": "2024-05-01T12:00:00Z",
        "howLong": "1.5s",
        "extra": {"nested": [1, "two", None]},
        "anything": [1, {"a": True}],
        "nullableCount": 0,
        "nullableText": None,
    }
    async with gateway_client(shop_config(shop.target)) as (_, client):
        result = await run(client, "shop:shop.v1.Inventory.Echo", sent)
        assert not result.is_error, text_of(result)
        back = result.structured_content["result"]
    assert back["unsigned"] == 4_000_000_000 and back["big"] == "9007199254740993"
    assert back["data"] == "aGVsbG8=" and back["color"] == "COLOR_GREEN"
    assert back["byId"] == {"7": {"currency": "GBP"}} and back["byNumber"] == 3
    assert back["maybe"] == 0  # proto3 optional: a zero that was given comes back
    assert back["when"] == "2024-05-01T12:00:00Z" and back["howLong"] == "1.500s"
    assert back["extra"] == {"nested": [1.0, "two", None]} and back["anything"] == [1.0, {"a": True}]
    assert back["nullableCount"] == 0 and "nullableText" not in back


async def test_recursive_messages_are_sent_whole(shop: ShopServer) -> None:
    tree = {"name": "root", "children": [{"name": "a", "children": [{"name": "a1"}]}, {"name": "b"}]}
    async with gateway_client(shop_config(shop.target)) as (_, client):
        result = await run(client, "shop:shop.v1.Inventory.CountTree", tree)
        assert result.structured_content["result"] == {"nodes": 4}


async def test_a_server_stream_is_forwarded_as_progress_and_returned_as_a_list(shop: ShopServer) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with gateway_client(shop_config(shop.target)) as (_, client):
        result = await client.call_tool(
            "run_tool",
            {"tool_id": "shop:shop.v1.Inventory.SearchItems", "args": {"query": "kettle"}},
            progress_callback=on_progress,
        )
    assert not result.is_error, text_of(result)
    data = result.structured_content["result"]
    assert [m["sku"] for m in data["messages"]] == ["SKU-2", "SKU-1"]  # cheapest first, as the server streams
    assert data["count"] == 2 and data["truncated"] is False
    assert [p[0] for p in seen] == [1, 2]


async def test_a_long_stream_is_cut_at_max_stream_messages(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target, max_stream_messages=5)) as (_, client):
        result = await run(client, "shop:shop.v1.Inventory.Ticks", {"everyMs": 1})
    data = result.structured_content["result"]
    assert data["count"] == 5 and data["truncated"] is True
    assert [m["n"] for m in data["messages"]] == [1, 2, 3, 4, 5]
    assert "max_stream_messages" in data["note"]


async def test_a_stream_is_also_cut_at_max_message_bytes_in_total(shop: ShopServer) -> None:
    # (from the protos: reflection's own answers are bigger than 1 kB, and the limit holds for them too)
    async with gateway_client(shop_config(shop.target, **PROTOS, max_message_bytes=1024)) as (_, client):
        result = await run(client, "shop:shop.v1.Inventory.Ticks", {"everyMs": 0})
    data = result.structured_content["result"]
    assert data["truncated"] is True and "(max_message_bytes)" in data["note"]
    assert 300 < data["count"] < 520  # 2-3 bytes a tick


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"exclude": ["shop.v1.Admin"]}, [m for m in METHODS if "Admin" not in m]),
        ({"include": ["*.Inventory.Get*", "shop.v1.Admin"]}, [METHODS[0], METHODS[5]]),
        (
            {"include": ["shop.v1.Inventory"], "exclude": ["*Ticks", "*.Fail", "*Blob", "*Echo"]},
            [METHODS[2], *METHODS[5:7]],
        ),
    ],
    ids=["exclude-a-service", "include-a-method-and-a-service", "include-then-exclude"],
)
async def test_include_and_exclude_select_methods_by_glob(
    shop: ShopServer, config: dict[str, Any], expected: list[str]
) -> None:
    async with gateway_client(shop_config(shop.target, **config)) as (gateway, _):
        assert sorted(gateway.registry.snapshot.tools) == expected


@pytest.mark.parametrize("source", [{}, PROTOS], ids=["reflection", "protos"])
async def test_the_configuration_overrides_a_description(shop: ShopServer, source: dict[str, Any]) -> None:
    override = {"shop.v1.Inventory.Blob": "Download a firmware image of the given size."}
    async with gateway_client(shop_config(shop.target, **source, descriptions=override)) as (_, client):
        doc = await describe(client, "shop:shop.v1.Inventory.Blob", "full")
        assert doc["description"].startswith("Download a firmware image of the given size.")
        assert await search(client, "firmware image", 1) == ["shop:shop.v1.Inventory.Blob"]


async def test_a_descriptor_set_with_source_info_gives_comments(shop: ShopServer, tmp_path: Any) -> None:
    from grpc_shop import descriptor_set

    built = descriptor_set(tmp_path / "shop.pb")
    async with gateway_client(shop_config(shop.target, descriptor_set=str(built))) as (_, client):
        doc = await describe(client, "shop:shop.v1.Inventory.SearchItems", "full")
        assert doc["description"].startswith("List the products whose name contains the query")
        result = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-3"})
        assert result.structured_content["result"]["name"] == "teapot"


async def test_a_server_without_reflection_is_served_from_its_protos(dark_shop: ShopServer) -> None:
    async with gateway_client(shop_config(dark_shop.target, **PROTOS)) as (gateway, client):
        assert sorted(gateway.registry.snapshot.tools) == METHODS
        result = await run(client, "shop:shop.v1.Inventory.GetItem", {"sku": "SKU-2"})
        assert result.structured_content["result"]["name"] == "green kettle"


async def test_health_comes_from_grpc_health_v1_else_from_the_channel(shop: ShopServer, dark_shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (gateway, _):
        status = (await gateway.registry.health_check())["shop"]
        assert status.healthy and status.message == "grpc.health.v1: SERVING"
    async with gateway_client(shop_config(dark_shop.target, **PROTOS)) as (gateway, _):
        status = (await gateway.registry.health_check())["shop"]
        assert status.healthy and status.message == "channel ready"


async def test_unknown_method_of_the_namespace_suggests_the_closest(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, "shop:shop.v1.Inventory.GetItems", {"sku": "SKU-1"}))
        assert error["code"] == "tool_not_found"
        assert "shop:shop.v1.Inventory.GetItem" in error["message"]
