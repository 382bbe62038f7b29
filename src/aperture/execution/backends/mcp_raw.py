"""A lean request channel to an upstream: `tools/call` as JSON text, answered without the SDK session.

The SDK's client session builds typed request and response objects and hands every message between
several tasks; for the one request a gateway makes all the time that costs more than the call itself.
This channel writes the request line itself, under ids of its own (`ap-1`, `ap-2`, ... — strings, so
they can never collide with the SDK session's integer ids on the same pipe), and the transport's reader
hands it the responses and progress notifications carrying those ids before anything else parses them.
Everything else on the connection (initialize, listing, sampling, logging) stays with the SDK.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import mcp_types
from mcp.shared.exceptions import MCPError

logger = logging.getLogger(__name__)

ID_PREFIX = "ap-"
MARKERS = (b'"ap-', b'"notifications/message"')
"""Every line the channel must see contains one of these (its ids and progress tokens, log messages);
others skip the JSON parse."""

Send = Callable[[bytes, str | None], Awaitable[None]]
"""Write one message line; the second argument is the id of the request it carries (None for a notice)."""

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


class ChannelClosedError(Exception):
    """The connection ended while a request was waiting (the transport says why)."""


@dataclass(slots=True)
class _Pending:
    done: anyio.Event = field(default_factory=anyio.Event)
    response: dict[str, Any] | None = None
    on_progress: ProgressFn | None = None
    context: Any = None


class RawChannel:
    """Requests written as lines; the transport's reader hands back (`accept`) the messages answering them.

    The transport calls `open` once it is up and `close` when it ends. On a pipe, `send` must write a
    whole line atomically with respect to other writers (an asyncio pipe transport's `write` does: it
    buffers the whole line before yielding). Over HTTP, `send` posts the message and feeds the answer
    back through `accept` before it returns; it raises `MCPError` when the server refuses the request.
    """

    def __init__(self) -> None:
        self._send: Send | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._pending: dict[str, _Pending] = {}
        self._counter = 0
        self._closed: str | None = None

        self.on_log: Callable[[dict[str, Any], Any], None] | None = None
        """Called with a log message's params, and the `context` of the request whose own HTTP stream carried
        it, else None (on a pipe, never: which call it belongs to is the caller's judgement, see
        `mcp_routing`). Log messages come here rather than to the SDK session so they are seen in order with
        the responses: the call a message belongs to is still in flight when it arrives."""

        self.on_answer: Callable[[Any], None] | None = None
        """Called with a request's `context` the moment its answer is read, before its waiter resumes: from
        then on nothing that arrives belongs to it."""

    def open(self, send: Send, task_group: anyio.abc.TaskGroup) -> None:
        self._send, self._task_group = send, task_group

    @property
    def usable(self) -> bool:
        return self._send is not None and self._closed is None

    def waits_for(self, request_id: Any) -> bool:
        """Whether a request with this id is still waiting for its answer."""
        return isinstance(request_id, str) and request_id in self._pending

    def context_of(self, request_id: str | None) -> Any:
        """The `context` of the waiting request with this id (None when there is none)."""
        pending = self._pending.get(request_id) if request_id is not None else None
        return pending.context if pending is not None else None

    def wants(self, line: bytes | bytearray) -> bool:
        """Whether `line` may be for this channel (cheap: no parsing).

        Log messages are wanted even with nothing in flight: whose they are is judged as they are read, in
        order with the answers, not later, when a call sent since might look like their owner.
        """
        if self.on_log is not None and MARKERS[1] in line:
            return True
        return bool(self._pending) and MARKERS[0] in line

    def accept(self, message: Any, stream_of: str | None = None) -> bool:
        """Take `message` when it answers or reports on one of this channel's requests; True when taken.

        `stream_of` names the request whose response stream carried the message, when there is one.
        """
        if not isinstance(message, dict):
            return False
        request_id = message.get("id")
        if isinstance(request_id, str) and "method" not in message:
            pending = self._pending.pop(request_id, None)
            if pending is None:
                return False
            pending.response = message
            pending.done.set()
            if self.on_answer is not None:
                self.on_answer(pending.context)
            return True
        params = message.get("params")
        if message.get("method") == "notifications/message" and isinstance(params, dict) and self.on_log is not None:
            self.on_log(params, self.context_of(stream_of))
            return True
        if message.get("method") == "notifications/progress" and isinstance(params, dict):
            token = params.get("progressToken")
            pending = self._pending.get(token) if isinstance(token, str) else None
            if pending is None or pending.on_progress is None:
                return False
            progress, total = params.get("progress"), params.get("total")
            if isinstance(progress, int | float):
                self._report(pending.on_progress, float(progress), total, params.get("message"))
            return True
        return False

    def _report(self, on_progress: ProgressFn, progress: float, total: Any, message: Any) -> None:
        # The reader must never wait on the caller's client, so progress goes out on a task of its own.
        total = float(total) if isinstance(total, int | float) else None
        message = message if isinstance(message, str) else None

        async def report() -> None:
            try:
                await on_progress(progress, total, message)
            except Exception as exc:  # a caller that went away must not break the upstream's reader
                logger.debug("could not forward progress: %s", exc)

        if self._task_group is not None:
            self._task_group.start_soon(report)

    def close(self, reason: str) -> None:
        """Fail every waiting request: the connection is gone."""
        self._closed = reason
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            entry.done.set()
            if self.on_answer is not None:
                self.on_answer(entry.context)

    async def request(
        self, method: str, params: dict[str, Any], on_progress: ProgressFn | None = None, context: Any = None
    ) -> Any:
        """Send one request and wait for its result; `context` comes back with its log messages and its answer.

        Raises:
            MCPError: the upstream answered with a JSON-RPC error.
            ChannelClosedError: the connection ended first.
        """
        send = self._send
        if send is None or self._closed is not None:
            raise ChannelClosedError(self._closed or "the connection is not open")
        self._counter += 1
        request_id = f"{ID_PREFIX}{self._counter}"
        pending = _Pending(on_progress=on_progress, context=context)
        if on_progress is not None:
            params = {**params, "_meta": {**params.get("_meta", {}), "progressToken": request_id}}
        line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, ensure_ascii=False)
        self._pending[request_id] = pending
        try:
            await send(line.encode("utf-8") + b"\n", request_id)
            await pending.done.wait()
        except MCPError:  # the transport refused the request itself (an HTTP error): nothing to cancel
            self._pending.pop(request_id, None)
            raise
        except BaseException:
            if self._pending.pop(request_id, None) is not None:
                await self._cancel(request_id)
            raise
        response = pending.response
        if response is None:
            raise ChannelClosedError(self._closed or "the connection closed")
        if "error" in response:
            error = response["error"] if isinstance(response["error"], dict) else {}
            code = error.get("code")
            raise MCPError(
                code=code if isinstance(code, int) else mcp_types.INTERNAL_ERROR,
                message=str(error.get("message", "error without a message")),
                data=error.get("data"),
            )
        return response.get("result")

    async def _cancel(self, request_id: str) -> None:
        """Tell the upstream to stop working on a request nobody waits for any more."""
        notice = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        if self._send is None or self._closed is not None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                await self._send(json.dumps(notice).encode("utf-8") + b"\n", None)
            except Exception as exc:  # the pipe may be gone already: then so is the request
                logger.debug("could not send a cancellation upstream: %s", exc)
