"""The agent behind the A2A surface: each message becomes one task that runs one meta-tool call through the
gateway, as its caller (the same rights, toolsets, limits, cache, breakers, audit and metrics as over MCP).

A task reports `working`, then each progress notice of the tool as a `working` status update, then the answer as
an artifact and `completed`; a failure is `failed` with a message saying what to fix (text, and the structured
error as a data part). Cancelling the task cancels the call, and so the backend's work.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from a2a.helpers import new_data_part, new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Artifact, Message, Part, Role, TaskState
from a2a.utils.errors import InvalidParamsError

from aperture.execution import CallContext, ProgressFn
from aperture.gateway import Reply, call_meta_tool, offered_meta_tools
from aperture.model import InvalidRequestError
from aperture.ops.access import SURFACE_KEY
from aperture.surface.a2a.operations import Operation, operation_of
from aperture.surface.a2a.tasks import identity_in

if TYPE_CHECKING:
    from a2a.types import Task

    from aperture.gateway import Gateway

logger = logging.getLogger(__name__)

STREAMING_STATE = "aperture.streaming"
"""Whether the caller streams the task (a `ServerCallContext` state key the request handler sets)."""


class GatewayExecutor(AgentExecutor):
    """Runs the operation a message asks for (see `aperture.surface.a2a.operations`) as a task."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def operation(self, message: Message) -> Operation:
        """The operation `message` asks for (refusals raise `InvalidParamsError`, see `operation_of`)."""
        return operation_of(message, {tool.name: tool for tool in offered_meta_tools(self.gateway)})

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        history = [context.message] if context.message is not None else []
        # A caller that waits for the answer sees only the finished task: it is sent as one event (each event
        # costs the SDK a trip through its queues and store). One that streams, or polls, sees every step.
        state = context.call_context.state if context.call_context is not None else {}
        stepwise = bool(
            state.get(STREAMING_STATE, True)
            or (context.configuration is not None and context.configuration.return_immediately)
            or context.current_task is not None
        )
        who = identity_in(context.call_context, self.gateway.caller())
        with self.gateway.acting_as(who):
            try:
                if context.message is None:
                    raise InvalidParamsError(message="The request carries no message.")
                operation = self.operation(context.message)
            except InvalidParamsError as refused:  # (checked before the task too; a follow-up message lands here)
                error = InvalidRequestError(refused.message or "The message asks for nothing this agent does.")
                failure = updater.new_agent_message(_failure_parts(Reply.failure(error)))
                await _finish(event_queue, context, updater, history, TaskState.TASK_STATE_FAILED, failure)
                return
            progress = None
            if stepwise:
                working = updater.new_agent_message([new_text_part(operation.label)])
                if context.current_task is None:
                    task = new_task(task_id, context_id, TaskState.TASK_STATE_WORKING, history=history)
                    task.status.message.CopyFrom(working)
                    await event_queue.enqueue_event(task)
                else:
                    await updater.start_work(working)

                async def progress(done: float, total: float | None, message: str | None) -> None:
                    shown = f"{done:g}/{total:g}" if total else f"{done:g}"
                    text = f"{shown} {message}" if message else shown
                    meta: dict[str, Any] = {"progress": done, "total": total, "message": message}
                    await updater.update_status(
                        TaskState.TASK_STATE_WORKING,
                        updater.new_agent_message([new_text_part(text)]),
                        metadata={k: v for k, v in meta.items() if v is not None},
                    )

            reply = await self.reply(operation, task_id, progress)
        if reply.is_error:
            failure = updater.new_agent_message(_failure_parts(reply))
            if stepwise:
                await updater.failed(failure)
            else:
                await _finish(event_queue, context, updater, history, TaskState.TASK_STATE_FAILED, failure)
            return
        parts = answer_parts(operation, reply)
        if not stepwise:
            artifact = Artifact(artifact_id=uuid.uuid4().hex, name=operation.meta_tool, parts=parts)
            await _finish(event_queue, context, updater, history, TaskState.TASK_STATE_COMPLETED, None, artifact)
            return
        await updater.add_artifact(parts, name=operation.meta_tool)
        await updater.complete()

    async def reply(self, operation: Operation, task_id: str, progress: ProgressFn | None = None) -> Reply:
        """Run `operation` through the gateway for the current caller (see `Gateway.acting_as`)."""
        call = CallContext(progress=progress, request_id=task_id, meta={SURFACE_KEY: "a2a"})
        return await call_meta_tool(self.gateway, operation.meta_tool, operation.arguments, call)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task cancelled; the SDK then cancels `execute`, and with it the tool call and its backend."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(updater.new_agent_message([new_text_part("Cancelled by the caller.")]))


def answer_parts(operation: Operation, reply: Reply) -> list[Part]:
    """An answer as artifact parts: for a run, the tool's own text (and the structured result as data); for a
    search, the ranked ids with the confidence label as text, and the whole answer as data."""
    parts: list[Part] = []
    if reply.run is not None:
        text = reply.run.text
        if text:
            parts.append(new_text_part(text))
    elif operation.meta_tool == "search_tools":
        hits = enumerate(reply.data.get("tools", []), 1)
        rows = [f"{i}. {hit['id']}: {hit.get('short_description', '')}" for i, hit in hits]
        reason = f" ({reply.data['reason']})" if reply.data.get("reason") else ""
        parts.append(new_text_part("\n".join([f"confidence: {reply.data.get('confidence', 'none')}{reason}", *rows])))
    parts.append(new_data_part(reply.data, media_type="application/json"))
    return parts


async def _finish(
    queue: EventQueue,
    context: RequestContext,
    updater: TaskUpdater,
    history: list[Message],
    state: TaskState,
    message: Message | None,
    artifact: Artifact | None = None,
) -> None:
    """End the task in `state`: as one finished `Task` event when none was sent yet, else as a status update."""
    if context.current_task is not None:
        if artifact is not None:
            await updater.add_artifact(list(artifact.parts), name=artifact.name)
        await updater.update_status(state, message)
        return
    await queue.enqueue_event(
        finished_task(context.task_id or "", context.context_id or "", history, state, message, artifact)
    )


def finished_task(
    task_id: str,
    context_id: str,
    history: list[Message],
    state: TaskState,
    message: Message | None,
    artifact: Artifact | None = None,
) -> Task:
    """A task in its final `state`, with its status message or its artifact."""
    task = new_task(task_id, context_id, state, history=history)
    if message is not None:
        task.status.message.CopyFrom(message)
    task.status.timestamp.GetCurrentTime()
    if artifact is not None:
        task.artifacts.append(artifact)
    return task


def failure_message(task_id: str, context_id: str, reply: Reply) -> Message:
    """The agent's status message for a failed reply: the error text, and the structured error as data."""
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_AGENT,
        task_id=task_id,
        context_id=context_id,
        parts=_failure_parts(reply),
    )


def _failure_parts(reply: Reply) -> list[Part]:
    return [new_text_part(reply.text), new_data_part(reply.data, media_type="application/json")]
