"""The SDK's request handler with what the gateway adds: messages that ask nothing are refused before any task
exists, and a send that waits for a new task's answer takes the direct path (`aperture.surface.a2a.direct`)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import TaskStore

from aperture.surface.a2a.direct import answer_directly, answers_directly
from aperture.surface.a2a.executor import STREAMING_STATE, GatewayExecutor

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.types import Message, SendMessageRequest, Task


class GatewayRequestHandler(DefaultRequestHandler):
    """The SDK's request handler, refusing a message that asks for nothing the gateway does before a task exists
    (a JSON-RPC `InvalidParams` error, HTTP 400 over REST), with what to send instead.

    With `direct` (the default), a send that waits for its answer as a new task is answered without the SDK's
    task machinery (`aperture.surface.a2a.direct`): the same task, saved in the same store, for a third of the
    cost. Streams, polls (`return_immediately`), follow-ups of a task and push configurations take the SDK's path.
    """

    def __init__(self, executor: GatewayExecutor, *, direct: bool = True, **options: Any) -> None:
        super().__init__(agent_executor=executor, **options)
        self.executor = executor
        self.direct = direct

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Message | Task:
        operation = self.executor.operation(params.message)
        store = self.task_store
        if self.direct and isinstance(store, TaskStore) and answers_directly(params):
            return await answer_directly(self.executor, operation, params, context, store)
        context.state[STREAMING_STATE] = False
        answer: Message | Task = await super().on_message_send(params, context)
        return answer

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        self.executor.operation(params.message)
        context.state[STREAMING_STATE] = True
        async for event in super().on_message_send_stream(params, context):
            yield event
