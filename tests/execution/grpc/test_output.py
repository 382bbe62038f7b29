"""The output schema of gRPC tools, derived from the response message: describe shows it, passthrough lists it as
`outputSchema`, and every result the test shop gives validates against it (with jsonschema, with the gateway's own
output check, and with the official MCP client's, which checks every non-error result of a listed tool)."""

from __future__ import annotations

from typing import Any

import jsonschema
import mcp_types
import pytest
from grpc_shop import ShopServer

from tests.execution.grpc.conftest import gateway_client, shop_config
from tests.execution.grpc.test_gateway import describe
from tests.mcp_helpers import error_of, run, text_of

pytestmark = pytest.mark.anyio

INVENTORY = "shop:shop.v1.Inventory."
EVERYTHING = {
    "small": -5,
    "unsigned": 4_000_000_000,
    "big": "-9223372036854775808",
    "ratio": 0.25,
    "weight": 1.5,
    "flag": True,
    "text": "héllo",
    "data": "aGVsbG8=",
    "color": "COLOR_GREEN",
    "price": {"currency": "EUR", "cents": "9007199254740993"},
    "tags": ["a", "b"],
    "prices": [{"currency": "USD", "cents": 1}, {}],
    "counts": {"x": 1, "zero": 0},
    "byId": {"-7": {"currency": "GBP"}, "0": {}},
    "byName": "",
    "maybe": 0,
    "when": "2024-05-01T12:00:00.250Z",
    "howLong": "-1.5s",
    "extra": {"nested": [1, "two", None, {"deep": True}]},
    "anything": None,
    "nullableCount": 0,
    "nullableText": "",
}
TREE = {"name": "root", "children": [{"name": "a", "children": [{"name": "a1"}], "parentHint": {"name": "root"}}]}
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"sku": "SKU-1"}),
    ("GetItem", {"sku": "SKU-3"}),  # COLOR_UNSPECIFIED: the enum's default is left out
    ("Echo", EVERYTHING),
    ("Echo", {"byNumber": 7, "anything": {"a": [1]}, "when": "1970-01-01T00:00:00Z"}),
    ("Echo", {}),  # every field at its default: {}
    ("EchoTree", TREE),
    ("EchoTree", {}),
    ("CountTree", TREE),
    ("Blob", {"size": 3}),
    ("SearchItems", {"query": "kettle"}),
    ("SearchItems", {"query": "no such thing"}),  # an empty stream
    ("Ticks", {"everyMs": 1}),  # cut at max_stream_messages: truncated, with a note
]


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def test_describe_shows_the_output_schema_derived_from_the_response_message(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        item = (await describe(client, INVENTORY + "GetItem"))["output_schema"]
        assert (await describe(client, INVENTORY + "GetItem", "full"))["output_schema"] == item
        echo = (await describe(client, INVENTORY + "Echo"))["output_schema"]
        tree = (await describe(client, INVENTORY + "EchoTree"))["output_schema"]
        search = (await describe(client, INVENTORY + "SearchItems"))["output_schema"]
    assert item["properties"]["price"]["properties"]["cents"] == {"type": "string", "pattern": "^-?[0-9]+$"}
    assert item["properties"]["quantity"]["type"] == "integer" and "64-bit integers are strings" in item["description"]
    names, number = item["properties"]["color"]["anyOf"]  # by name, or a number the descriptors do not name
    assert names["enum"] == ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"] and number["type"] == "integer"
    props = echo["properties"]
    assert props["big"]["type"] == "string" and props["unsigned"]["type"] == "integer"
    assert props["ratio"] == {"type": ["number", "string"], "pattern": "^(NaN|-?Infinity)$"}
    assert props["byId"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}
    assert props["when"]["format"] == "date-time" and props["nullableCount"]["type"] == "integer"  # never null
    assert "at most one is present" in props["byName"]["description"]
    assert [branch.get("required") for branch in echo["oneOf"]] == [["byName"], ["byNumber"], None]
    assert tree["properties"]["children"]["items"] == {"$ref": "#/$defs/shop.v1.Category"}
    assert search["required"] == ["messages", "count", "truncated"] and search["additionalProperties"] is False
    assert search["properties"]["messages"]["items"]["properties"]["sku"] == {"type": "string"}


async def test_every_result_of_the_shop_validates_against_its_output_schema(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target, max_stream_messages=3)) as (_, client):
        schemas = {m: (await describe(client, INVENTORY + m))["output_schema"] for m, _ in CALLS}
        results = []
        for method, args in CALLS:
            result = await run(client, INVENTORY + method, args)
            assert not result.is_error, text_of(result)  # the gateway checks the result against the schema too
            results.append(result.structured_content["result"])
    for (method, _), data in zip(CALLS, results, strict=True):
        _validator(schemas[method]).validate(data)
    item, unspecified, everything, chosen, empty, tree = results[:6]
    assert item["price"]["cents"] == "2999" and "color" not in unspecified
    assert everything["big"] == "-9223372036854775808" and everything["price"]["cents"] == "9007199254740993"
    assert everything["counts"] == {"x": 1, "zero": 0} and everything["byId"]["-7"] == {"currency": "GBP"}
    assert everything["byName"] == "" and everything["maybe"] == 0 and "anything" in everything
    assert everything["when"] == "2024-05-01T12:00:00.250Z" and everything["howLong"] == "-1.500s"
    assert chosen["byNumber"] == 7 and empty == {}
    assert tree["children"][0]["children"] == [{"name": "a1"}] and results[6] == {}
    assert results[9]["count"] == 2 and results[10] == {"messages": [], "count": 0, "truncated": False}
    assert results[11]["truncated"] is True and results[11]["count"] == 3 and "note" in results[11]


async def test_the_schema_refuses_what_the_json_mapping_never_writes(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        echo = _validator((await describe(client, INVENTORY + "Echo"))["output_schema"])
        search = _validator((await describe(client, INVENTORY + "SearchItems"))["output_schema"])
    wrong_shapes: list[dict[str, Any]] = [
        {"big": 5},  # 64-bit integers are strings
        {"small": "5"},
        {"nullableCount": None},  # an unset wrapper is left out
        {"color": "PURPLE"},
        {"byName": "a", "byNumber": 1},
        {"counts": {"x": "1"}},
        {"ratio": "1.5"},
        {"small_": 1},
    ]
    for wrong in wrong_shapes:
        assert not echo.is_valid(wrong), wrong
    assert not search.is_valid({"messages": [{"sku": 1}], "count": 1, "truncated": False})
    assert not search.is_valid({"messages": []})


async def test_passthrough_lists_the_output_schema_and_the_sdk_client_checks_every_result(shop: ShopServer) -> None:
    document = shop_config(shop.target, max_stream_messages=3, gw_server={"expose": "passthrough"})
    async with gateway_client(document) as (_, client):
        listed = {tool.title: tool for tool in (await client.list_tools()).tools}
        echo = listed["Inventory.Echo"]
        assert echo.output_schema is not None and echo.output_schema["properties"]["big"]["type"] == "string"
        assert all(tool.output_schema is not None for tool in listed.values())
        for method, args in CALLS:  # the client raises RuntimeError on a result its outputSchema refuses
            result = await client.call_tool(listed[f"Inventory.{method}"].name, args)
            assert not result.is_error, text_of(result)
        # It does check: a result of the wrong shape is refused.
        with pytest.raises(RuntimeError, match="Invalid structured content"):
            await client.session.validate_tool_result(
                echo.name, mcp_types.CallToolResult(content=[], structured_content={"big": 5})
            )
        # An error result is not checked against the schema (neither by the gateway nor by the client).
        failed = await client.call_tool(listed["Inventory.Fail"].name, {"code": "NOT_FOUND", "message": "gone"})
        assert failed.is_error and "gone" in text_of(failed)


async def test_an_error_result_is_not_validated_against_the_output_schema(shop: ShopServer) -> None:
    async with gateway_client(shop_config(shop.target)) as (_, client):
        error = error_of(await run(client, INVENTORY + "Fail", {"code": "NOT_FOUND", "message": "no item x"}))
    assert error["code"] == "execution_failed" and "no item x" in error["message"]
