"""The direct path of a send that waits for its answer as a new task: the operation runs, and the finished task is
saved in the store and returned, without the SDK's per-task machinery (an `ActiveTask` with two asyncio tasks,
thread-safe event queues, a store write per event). It answers what the SDK's path answers, the same task in the
same store (a parity test holds the two together); measured in docs/benchmarks.md (issue 23).

Only where nothing can watch the task while it runs: not a stream, not a poll (`return_immediately`), not a
follow-up message of an existing task, not with a push configuration. Those take the SDK's path.
"""

from __future__ import annotations

import uuid

from a2a.server.context import ServerCallContext
from a2a.server.tasks import TaskStore
from a2a.types import Artifact, Message, SendMessageRequest, Task, TaskState
from a2a.utils.proto_utils import validate_proto_required_fields
from a2a.utils.task import apply_history_length, validate_history_length

from aperture.surface.a2a.executor import GatewayExecutor, answer_parts, failure_message, finished_task
from aperture.surface.a2a.operations import Operation
from aperture.surface.a2a.tasks import identity_in


def answers_directly(params: SendMessageRequest) -> bool:
    """Whether nothing can watch this send's task while it runs (see the module docstring)."""
    configuration = params.configuration
    return not (
        params.message.task_id
        or configuration.return_immediately
        or configuration.HasField("task_push_notification_config")
    )


async def answer_directly(
    executor: GatewayExecutor,
    operation: Operation,
    params: SendMessageRequest,
    context: ServerCallContext,
    store: TaskStore,
) -> Task:
    """Run `operation` for the caller of `context` and return its finished task, saved in `store`.

    Raises:
        InvalidParamsError: what the SDK's path refuses too (required fields missing, a negative history length).
    """
    validate_proto_required_fields(params)
    validate_history_length(params.configuration)
    task_id, context_id = str(uuid.uuid4()), params.message.context_id or str(uuid.uuid4())
    message = Message()
    message.CopyFrom(params.message)
    message.task_id, message.context_id = task_id, context_id
    gateway = executor.gateway
    with gateway.acting_as(identity_in(context, gateway.caller())):
        reply = await executor.reply(operation, task_id)
    if reply.is_error:
        failed = failure_message(task_id, context_id, reply)
        task = finished_task(task_id, context_id, [message], TaskState.TASK_STATE_FAILED, failed)
    else:
        artifact = Artifact(
            artifact_id=str(uuid.uuid4()), name=operation.meta_tool, parts=answer_parts(operation, reply)
        )
        task = finished_task(task_id, context_id, [message], TaskState.TASK_STATE_COMPLETED, None, artifact)
    await store.save(task, context)
    return apply_history_length(task, params.configuration)
