"""An upstream answer nested too deep fails its own call with a tool error; the upstream connection goes on.

A real upstream process (tests/fixtures/deep_upstream.py) that nests its answers as deep as asked.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest

from aperture.config import parse_config
from aperture.execution import McpBackend
from aperture.execution.backends.mcp_depth import too_deep_answer
from aperture.gateway import Gateway
from aperture.model import ExecutionError
from aperture.model.nesting import MAX_JSON_DEPTH
from tests.conftest import FIXTURES

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    upstream = {"command": sys.executable, "args": [str(FIXTURES / "deep_upstream.py")]}
    config = parse_config({"search": {"strategy": "bm25"}, "mcpServers": {"deep": upstream}})
    async with Gateway(config) as gw:
        yield gw


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000], ids=["65", "1000", "100k"])
async def test_a_result_nested_too_deep_is_a_tool_error_and_other_calls_go_on(gateway: Gateway, depth: int) -> None:
    backend = gateway.registry.get("deep")
    assert isinstance(backend, McpBackend)
    fine = await gateway.run("deep:nest", {"depth": 10})
    assert not fine.is_error, fine.text
    deep = await gateway.run("deep:nest", {"depth": depth})
    assert deep.is_error and deep.error is not None and deep.error.code == "execution_failed"
    assert f"more than {MAX_JSON_DEPTH} levels deep" in deep.text
    echoed = await gateway.run("deep:echo", {"text": "still here"})
    assert not echoed.is_error and echoed.text == "still here"
    assert backend.restarts == 0


async def test_an_answer_to_the_sdk_session_nested_too_deep_is_refused_and_the_upstream_goes_on(
    gateway: Gateway,
) -> None:
    backend = gateway.registry.get("deep")
    assert isinstance(backend, McpBackend)
    with pytest.raises(ExecutionError, match="levels deep"):  # resources/read goes through the SDK's session
        await backend.read_resource("deep://r")
    assert (await gateway.run("deep:echo", {"text": "after"})).text == "after"
    assert backend.restarts == 0


def test_only_text_nested_too_deep_is_answered_for() -> None:
    assert too_deep_answer(b'{"jsonrpc":"2.0","id":"ap-1","result":{"a":[1]}}') is None
    answer = too_deep_answer(b'{"jsonrpc":"2.0","id":"ap-1","result":' + b"[" * 100 + b"]" * 100 + b"}")
    assert answer is not None and answer["id"] == "ap-1" and answer["error"]["code"] == -32603
    unknown = too_deep_answer(b'{"result":' + b"[" * 100 + b"]" * 100 + b',"id":3,"x":1}', fallback_id="ap-2")
    assert unknown is not None and unknown["id"] == "ap-2"
