"""execute_code over a real MCP session: a program runs tools through the gateway, hostile programs are
contained with one sentence to the caller, and the gateway keeps serving (run_tool answers alongside)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from aperture.config import load_config
from aperture.execution.code import BwrapRuntime
from aperture.gateway import Gateway
from aperture.surface.mcp import McpSurface

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(BwrapRuntime().problem() is not None, reason="no bubblewrap here (make test installs it)"),
]

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def write_config(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "aperture.yaml"
    path.write_text(
        f"backends:\n  - {{name: toolbox, kind: python, module: toolbox, path: {EXAMPLES}}}\n"
        f"execution:\n  code: {code}\n"
    )
    return path


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    config = load_config(write_config(tmp_path, "{enabled: true, timeout_ms: 3000}"))
    async with Gateway(config) as gateway, Client(McpSurface(gateway).server) as c:
        yield c


async def execute(client: Client, code: str, **args: Any) -> tuple[bool, dict[str, Any]]:
    result = await client.call_tool("execute_code", {"code": code, **args})
    return bool(result.is_error), json.loads(result.content[0].text)  # type: ignore[union-attr]


async def test_a_program_runs_tools_through_the_gateway(client: Client) -> None:
    code = """
rows = [tools.run('toolbox:calculate', expression=f'{i} * 3') for i in range(5)]
found = tools.search('convert units', limit=1)['tools'][0]['id']
print('done')
{'sum': sum(r['result'] if isinstance(r, dict) else float(r) for r in rows), 'found': found}
"""
    is_error, body = await execute(client, code)
    assert not is_error, body
    assert body["value"] == {"sum": 30.0, "found": "toolbox:convert_units"}
    assert body["stdout"] == "done\n"
    assert [c["id"] for c in body["toolCalls"]][:2] == ["toolbox:calculate"] * 2
    assert body["durationMs"] > 0 and "cpuMs" in body["resources"]


async def test_an_unknown_tool_through_the_bridge_gets_run_tools_answer(client: Client) -> None:
    is_error, body = await execute(client, "tools.run('toolbox:nope')")
    assert is_error
    assert body["error"].startswith("The program failed: ToolError: No tool 'toolbox:nope'")


async def test_hostile_programs_are_contained_and_the_gateway_serves_on(client: Client) -> None:
    # Only the endless loop needs the short limit; the others end on their own (a busy machine may take longer
    # than 200 ms just to start the interpreter).
    for code, said, limit in [
        ("while True: pass", "time limit (200 ms)", 200),
        ("import os\nos.fork()", "Operation not permitted", 10_000),
        (
            "import os, sys\nos.write(int(sys.argv[-1]), b'\\x00\\x00\\x00\\x05hello')\nwhile True: pass",
            "not JSON",
            10_000,
        ),
    ]:
        is_error, body = await execute(client, code, timeout_ms=limit)
        assert is_error and said in body["error"], body["error"]
    result = await client.call_tool("run_tool", {"tool_id": "toolbox:calculate", "args": {"expression": "2+2"}})
    assert not result.is_error


async def test_twenty_executions_at_once_wait_their_turn_and_run_tool_still_answers(client: Client) -> None:
    outcomes: list[bool] = []
    answered = anyio.Event()

    async def one() -> None:
        is_error, body = await execute(client, "sum(range(1000))")
        outcomes.append(not is_error and body["value"] == 499500)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(one)
            result = await client.call_tool("run_tool", {"tool_id": "toolbox:calculate", "args": {"expression": "1+1"}})
            assert not result.is_error
            answered.set()
    assert answered.is_set() and outcomes == [True] * 20


async def test_execute_code_is_not_offered_unless_enabled_or_to_other_roles(tmp_path: Path) -> None:
    off = load_config(write_config(tmp_path, "{enabled: false}"))
    async with Gateway(off) as gateway, Client(McpSurface(gateway).server) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "execute_code" not in names and "run_tool" in names
    async with Gateway(load_config(write_config(tmp_path, "{enabled: true, roles: [coder]}"))) as gateway:
        assert not gateway.may_execute_code() or "*" in gateway.ops.caller().roles
        assert gateway.ops.health.code is not None and gateway.ops.health.code()["available"] is True
