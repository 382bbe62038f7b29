"""Bad input to the A2A surface gets the protocol's error shape with a message that says what to fix, and the
server keeps serving: malformed bodies, unknown methods, empty or oversized messages, unknown or finished tasks,
a client leaving mid-stream, a tool outside the caller's toolset."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from a2a.client import A2AClientError
from a2a.helpers import get_data_parts, new_raw_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError, TaskNotFoundError

from tests.surface.a2a_serving import (
    AUTH,
    DEV_KEY,
    a2a_client,
    a2a_gateway,
    data,
    final_task,
    status_text,
    text,
)

pytestmark = pytest.mark.anyio
HEADERS = {"A2A-Version": "1.0", "Content-Type": "application/json"}


async def still_serving(base_url: str) -> None:
    async with a2a_client(base_url, streaming=False) as client:
        task = await final_task(client, data({"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "Still Up"}}))
    assert task.artifacts[0].parts[0].text == "still-up"


def rpc(method: str, params: Any, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def send_params(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"message": {"messageId": "m-1", "role": "ROLE_USER", "parts": parts}}


async def test_malformed_bodies_and_unknown_methods_get_the_bindings_error_shapes() -> None:
    async with a2a_gateway() as served, httpx.AsyncClient(base_url=served.base_url) as http:
        broken = await http.post("/a2a", content=b'{"jsonrpc": "2.0", "id": 1, "method": ', headers=HEADERS)
        assert broken.json()["error"]["code"] == -32700
        unknown = await http.post("/a2a", json=rpc("tasks/explode", {}), headers=HEADERS)
        assert unknown.json()["error"]["code"] == -32601 and unknown.json()["id"] == 1
        wrong = await http.post("/a2a", json=rpc("SendMessage", {"message": "hello"}), headers=HEADERS)
        assert wrong.json()["error"]["code"] in (-32600, -32602)
        rest = await http.post("/a2a/message:send", content=b"{nope", headers=HEADERS)
        assert rest.status_code == 400 and rest.json()["error"]["status"] == "INVALID_ARGUMENT"
        await still_serving(served.base_url)


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ([], "The message has no parts. Send a text part"),
        ([{"text": "   "}], "The message's text is empty."),
        ([{"data": {"query": "x"}}], 'The data part names no operation ("op").'),
        ([{"data": {"op": "explode"}}], "No operation 'explode'; operations here: search, describe, run, "),
        ([{"data": {"op": "run"}}, {"data": {"op": "run"}}], "The message has 2 data parts; send one operation each."),
        ([{"data": [1, 2]}], "The data part is a list, not a JSON object."),
    ],
    ids=["no-parts", "blank-text", "no-op", "unknown-op", "two-ops", "not-an-object"],
)
async def test_a_message_that_asks_nothing_is_refused_before_any_task_with_what_to_send(
    parts: list[dict[str, Any]], says: str
) -> None:
    async with a2a_gateway() as served, httpx.AsyncClient(base_url=served.base_url) as http:
        answer = (await http.post("/a2a", json=rpc("SendMessage", send_params(parts)), headers=HEADERS)).json()
        assert answer["error"]["code"] == -32602, answer
        assert says in answer["error"]["message"] and '{"op": "run", "tool_id"' in answer["error"]["message"]
        listed = (await http.post("/a2a", json=rpc("ListTasks", {}), headers=HEADERS)).json()
        assert listed["result"].get("tasks", []) == []


async def test_a_file_part_is_refused_through_the_sdk_client() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        message = new_raw_message(b"\x89PNG", media_type="image/png", role=Role.ROLE_USER)
        with pytest.raises(InvalidParamsError, match="text and data parts only, not files or URLs"):
            await final_task(client, SendMessageRequest(message=message))
        with pytest.raises(InvalidParamsError, match="no parts"):
            await final_task(client, SendMessageRequest(message=Message(message_id="m-2", role=Role.ROLE_USER)))


async def test_a_ten_megabyte_part_is_refused_with_the_limit_and_the_server_keeps_serving() -> None:
    async with a2a_gateway() as served, httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        huge = send_params([{"text": "x" * (10 * 1024 * 1024)}])
        answer = await http.post("/a2a", json=rpc("SendMessage", huge), headers=HEADERS)
        assert answer.status_code == 413
        error = answer.json()["error"]
        assert (
            error["code"] == -32600
            and "at most 1048576 bytes per request (server.a2a.max_request_bytes)" in error["message"]
        )
        rest = await http.post("/a2a/message:send", json=huge, headers=HEADERS)
        assert rest.status_code == 413 and "at most 1048576 bytes" in rest.json()["error"]["message"]
        await still_serving(served.base_url)


async def test_unknown_and_finished_tasks_are_refused_with_the_protocols_errors() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id="no-such-task"))
        with pytest.raises(TaskNotFoundError):
            await client.cancel_task(CancelTaskRequest(id="no-such-task"))
        done = await final_task(client, text("hash a string"))
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=done.id))
        await still_serving(served.base_url)


async def test_a_client_that_leaves_mid_stream_leaves_the_task_running_to_its_end() -> None:
    async with a2a_gateway() as served:
        async with a2a_client(served.base_url) as client:
            with anyio.fail_after(10):
                async for event in client.send_message(data({"op": "run", "tool_id": "work:slow"})):
                    if event.HasField("task"):
                        task_id = event.task.id
                    if served.gate.started.is_set():
                        break  # (closes the stream: the client is gone)
        async with a2a_client(served.base_url, streaming=False) as client:
            assert (await client.get_task(GetTaskRequest(id=task_id))).status.state == TaskState.TASK_STATE_WORKING
        async with a2a_client(served.base_url) as client:
            served.gate.go.set()
            with anyio.fail_after(10):
                final = [event async for event in client.subscribe(SubscribeToTaskRequest(id=task_id))][-1]
        assert final.status_update.status.state == TaskState.TASK_STATE_COMPLETED
        assert not served.gate.cancelled.is_set()


async def test_a_tool_outside_the_callers_toolset_fails_the_task_as_an_unknown_tool() -> None:
    async with a2a_gateway(AUTH) as served, a2a_client(served.base_url, key=DEV_KEY, streaming=False) as client:
        task = await final_task(
            client, data({"op": "run", "tool_id": "toolbox:calculate", "args": {"expression": "1"}})
        )
        assert task.status.state == TaskState.TASK_STATE_FAILED
        message = status_text(task.status.message)
        assert message.startswith("No tool 'toolbox:calculate'.")
        (error,) = get_data_parts(task.status.message.parts)
        assert error["error"]["code"] == "tool_not_found"
        ok = await final_task(client, data({"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "In View"}}))
        assert ok.status.state == TaskState.TASK_STATE_COMPLETED


async def test_invalid_arguments_fail_the_task_with_every_problem_listed() -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        task = await final_task(client, data({"op": "run", "tool_id": "toolbox:slugify", "args": {"txt": "x"}}))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    message = status_text(task.status.message)
    assert "text" in message and "txt" in message


async def test_an_unauthenticated_stream_is_refused() -> None:
    async with a2a_gateway(AUTH) as served, a2a_client(served.base_url) as client:
        with pytest.raises(A2AClientError, match="401"):
            await final_task(client, text("slugify"))
