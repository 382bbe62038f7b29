"""Parity of the direct path (a waiting send of a new task, `aperture.surface.a2a.direct`) with the SDK's path:
the same task for the same message, success or failure, stored alike; and it is only taken where nothing can
watch the task while it runs."""

from __future__ import annotations

from typing import Any

import pytest
from a2a.types import GetTaskRequest, SendMessageConfiguration, SendMessageRequest, Task
from google.protobuf.json_format import MessageToDict

from aperture.surface.a2a.direct import answers_directly
from tests.surface.a2a_serving import a2a_client, a2a_gateway, data, final_task, text

pytestmark = pytest.mark.anyio

VOLATILE = {"id", "taskId", "contextId", "messageId", "artifactId", "timestamp", "duration_ms"}


def shape(task: Task) -> Any:
    """The task without what differs between any two runs (ids, times, durations)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in VOLATILE}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    return strip(MessageToDict(task))


@pytest.mark.parametrize(
    "request_",
    [
        data({"op": "run", "tool_id": "toolbox:slugify", "args": {"text": "Same Both Ways"}}),
        data({"op": "run", "tool_id": "toolbox:slugify", "args": {"txt": "wrong"}}),
        data({"op": "describe", "tool_id": "toolbox:slugfy"}),
        text("convert kilometres to miles"),
    ],
    ids=["run", "invalid-args", "unknown-tool", "text-search"],
)
async def test_the_direct_path_answers_what_the_sdks_path_answers(request_: SendMessageRequest) -> None:
    async with a2a_gateway() as served, a2a_client(served.base_url, streaming=False) as client:
        tasks = []
        for direct in (True, False):
            served.surface.handler.direct = direct
            sent = SendMessageRequest()
            sent.CopyFrom(request_)
            sent.message.message_id = f"m-{direct}"
            tasks.append(await final_task(client, sent))
        assert shape(tasks[0]) == shape(tasks[1])
        for task in tasks:  # both are in the store, for their owner
            assert shape(await client.get_task(GetTaskRequest(id=task.id))) == shape(task)


def test_only_a_send_nothing_can_watch_takes_the_direct_path() -> None:
    plain = data({"op": "search", "query": "x"})
    assert answers_directly(plain)
    polled = SendMessageRequest(message=plain.message, configuration=SendMessageConfiguration(return_immediately=True))
    follow_up = SendMessageRequest()
    follow_up.CopyFrom(plain)
    follow_up.message.task_id = "t-1"
    pushed = SendMessageRequest()
    pushed.CopyFrom(plain)
    pushed.configuration.task_push_notification_config.url = "https://example.com/hook"
    assert not any(answers_directly(r) for r in (polled, follow_up, pushed))
