"""Meta-tool answers in the surface-neutral shape (`Reply`): what every surface sends, decided once."""

from __future__ import annotations

import pytest

from aperture.execution import CallContext
from aperture.gateway import Gateway, Reply, call_meta_tool

pytestmark = pytest.mark.anyio


async def test_a_search_replies_with_its_json_data(gateway: Gateway) -> None:
    reply = await call_meta_tool(gateway, "search_tools", {"query": "convert kilometres to miles"}, CallContext())
    assert not reply.is_error and reply.run is None
    assert reply.data["tools"][0]["id"] == "toolbox:convert_units"
    assert reply.text.startswith('{"tools":[') and reply.to_dict() is reply.data


async def test_a_run_replies_with_the_tools_own_result_and_its_structured_form(gateway: Gateway) -> None:
    reply = await call_meta_tool(
        gateway, "run_tool", {"tool_id": "toolbox:slugify", "args": {"text": "Hello World"}}, CallContext()
    )
    assert reply.run is not None and reply.run.text == "hello-world"
    assert reply.data["tool_id"] == "toolbox:slugify" and reply.data["result"] == {"result": "hello-world"}


async def test_failures_reply_with_the_message_and_the_structured_error(gateway: Gateway) -> None:
    reply = await call_meta_tool(gateway, "describe_tool", {"tool_id": "toolbox:slugfy"}, CallContext())
    assert reply.is_error and reply.error is not None
    assert reply.data["error"]["code"] == "tool_not_found" and reply.data["error"]["op"] == "describe_tool"
    assert "toolbox:slugify" in reply.text
    invalid = await call_meta_tool(gateway, "search_tools", {"limit": 3}, CallContext())
    assert invalid.is_error and "query" in invalid.text


async def test_an_unknown_meta_tool_names_the_closest_offered_ones(gateway: Gateway) -> None:
    reply = await call_meta_tool(gateway, "serch_tools", {}, CallContext())
    assert reply.is_error and reply.data["error"]["details"]["closest"][0] == "search_tools"


def test_a_reply_of_a_dict_is_that_dict() -> None:
    assert Reply.of({"a": 1}) == Reply(data={"a": 1})
