"""The stdio transport, answering malformed lines with JSON-RPC errors instead of dropping them.

The SDK's `stdio_server` passes an unparseable line to the server as an exception, which is logged and
never answered: a client that sent a broken request would wait for ever. Here every line that is not
a valid JSON-RPC message gets a parse error (-32700) or an invalid-request error (-32600) carrying the
request's id when it has one; so does a line nested too deep to parse, and a message whose id is no id
(see `wire`). Like the SDK, fd 0 and fd 1 are diverted while serving, so stray prints from tools cannot
corrupt the wire. Asked to stop, it answers every request it read before the input ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types
import pydantic
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

from aperture.model.nesting import MAX_JSON_DEPTH, json_too_deep, leading_id
from aperture.surface.mcp.wire import TOO_DEEP, id_problem

logger = logging.getLogger(__name__)
READ_SIZE = 1 << 16
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SHUTTING_DOWN = "The gateway is shutting down and did not finish this request. Retry in a few seconds, once it is back."
TOO_LARGE = (
    f"Message too large: over {MAX_MESSAGE_BYTES} bytes without a newline; it was dropped. "
    "Send one JSON-RPC message per line, each smaller than that."
)


def error_line(request_id: Any, code: int, message: str) -> str:
    """A JSON-RPC error response as one line (id null when the request's id is unknown)."""
    valid_id = request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None
    return json.dumps({"jsonrpc": "2.0", "id": valid_id, "error": {"code": code, "message": message}})


def reject(line: str, error: pydantic.ValidationError) -> str | None:
    """The error response for a line that is not a valid JSON-RPC message, or None when none is due."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        return error_line(
            None, mcp_types.PARSE_ERROR, f"Parse error: not JSON ({exc}). Send one JSON-RPC message per line."
        )
    if isinstance(data, dict) and "id" not in data and "method" in data:
        return None  # a broken notification: JSON-RPC forbids answering notifications
    is_request = isinstance(data, dict) and "method" in data
    found = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}: {e['msg']}" for e in error.errors()]
    relevant = [p for p in found if not (is_request and p.startswith(("result", "error")))] or found
    problems = "; ".join(list(dict.fromkeys(relevant))[:3])
    request_id = data.get("id") if isinstance(data, dict) else None
    return error_line(request_id, mcp_types.INVALID_REQUEST, f"Invalid request: {problems}")


class _Lines:
    """Splits a byte stream into lines, holding at most `MAX_MESSAGE_BYTES` of an unfinished one.

    A longer line is dropped up to its newline (`overflowed` says so once), so a client that never sends
    a newline cannot make the gateway hold unbounded memory. Parts are joined once, at the newline.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False
        self.overflowed = False

    def feed(self, chunk: bytes) -> list[bytes]:
        self.overflowed = False
        if b"\n" not in chunk:
            if not self._skipping:
                self._parts.append(chunk)
                self._size += len(chunk)
                if self._size > MAX_MESSAGE_BYTES:
                    self._parts, self._size, self._skipping, self.overflowed = [], 0, True, True
            return []
        head, *lines, tail = chunk.split(b"\n")
        complete = lines if self._skipping else [b"".join([*self._parts, head]), *lines]
        self._parts, self._size, self._skipping = ([tail] if tail else []), len(tail), False
        return complete


def _claim(fd: int) -> int:
    """Serve the wire from a private duplicate of `fd`, pointing `fd` itself at /dev/null (stdin) or stderr."""
    private = os.dup(fd)
    diversion = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
    os.dup2(diversion, fd)
    os.close(diversion)
    return private


def _pollable(fd: int) -> bool:
    """Pipes, sockets and terminals can be waited on; regular files (`serve < requests.jsonl`) cannot."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def _read_chunks(fd: int) -> AsyncIterator[bytes]:
    """Chunks from `fd` until end of file: non-blocking reads on the event loop, no thread per read."""
    if not _pollable(fd):
        async with await anyio.open_file(fd, "rb", buffering=0, closefd=False) as file:
            while chunk := await file.read(READ_SIZE):
                yield chunk
        return
    os.set_blocking(fd, False)
    unbroken = 0
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            unbroken = 0
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return
        yield chunk
        unbroken += 1
        if len(chunk) == READ_SIZE or unbroken >= 16:
            # Input that never runs dry (a flood) must not starve everything else, signals included.
            unbroken = 0
            await anyio.lowlevel.checkpoint()


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


LeanHandler = Callable[[Any, Callable[[str, dict[str, Any]], Awaitable[None]]], Awaitable[dict[str, Any]] | None]
"""`(params, notify)` for a `tools/call`: an awaitable of its result, or None to leave it to the SDK."""


class _LeanCalls:
    """`tools/call` requests answered beside the SDK's session: read, run and answered with no typed objects.

    Each runs in a task of its own in `calls`; `notifications/cancelled` naming one cancels it (and,
    as JSON-RPC asks, it is then not answered).
    """

    def __init__(self, handler: LeanHandler, calls: anyio.abc.TaskGroup, send: Callable[[str], Awaitable[None]]):
        self._handler = handler
        self._calls = calls
        self._send = send
        self._running: dict[tuple[type, Any], anyio.CancelScope] = {}

    def take(self, message: Any) -> bool:
        """Handle `message` here when it is a call (or cancellation) this path answers; True when taken."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return False
        method, params = message.get("method"), message.get("params")
        if method == "notifications/cancelled" and isinstance(params, dict):
            scope = self._running.get(_key(params.get("requestId")))
            if scope is None:
                return False
            scope.cancel()
            return True
        request_id = message.get("id")
        if method != "tools/call" or not _valid_id(request_id) or _key(request_id) in self._running:
            return False
        work = self._handler(params, self._notify)
        if work is None:
            return False
        scope = self._running[_key(request_id)] = anyio.CancelScope()
        self._calls.start_soon(self._answer, request_id, work, scope)
        return True

    async def _answer(self, request_id: Any, work: Awaitable[dict[str, Any]], scope: anyio.CancelScope) -> None:
        try:
            with scope:
                try:
                    result = await work
                except Exception as exc:  # the handler answers failures itself; this is a bug, answer it anyway
                    logger.exception("lean tools/call failed")
                    await self._send(error_line(request_id, mcp_types.INTERNAL_ERROR, f"internal error: {exc}"))
                    return
                await self._send(_compact({"jsonrpc": "2.0", "id": request_id, "result": result}))
        finally:
            self._running.pop(_key(request_id), None)

    async def _notify(self, method: str, params: dict[str, Any]) -> None:
        await self._send(_compact({"jsonrpc": "2.0", "method": method, "params": params}))


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _key(request_id: Any) -> tuple[type, Any]:
    return (type(request_id), request_id)  # 1 and "1" are different requests


def _compact(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


# The lean path parses a line itself only when it may be for it.
_LEAN_MARKERS = (b'"tools/call"', b'"notifications/cancelled"')


@asynccontextmanager
async def stdio_transport(
    lean: LeanHandler | None = None,
    *,
    stopping: anyio.Event | None = None,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]]:
    """Streams for `Server.run` over this process's stdin and stdout.

    With `lean`, `tools/call` requests it accepts are answered beside the SDK (see `_LeanCalls`). Once
    `stopping` is set, `drain` runs (it answers the calls in flight), requests the SDK still has not
    answered shortly after get a "shutting down" error, and reading stops: the read stream ends, so
    `Server.run` returns, and every request read has had an answer.
    """
    sys.stdout.flush()
    saved = os.dup(0), os.dup(1)
    stdin, stdout = _claim(0), _claim(1)
    if _pollable(stdout):
        os.set_blocking(stdout, False)
    incoming_send, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, outgoing_receive = anyio.create_memory_object_stream[SessionMessage | str](16)

    queued = 0  # lines handed to the writer task and not yet written
    unanswered: dict[tuple[type, Any], Any] = {}  # requests handed to the SDK, by key: their ids
    given_up: set[tuple[type, Any]] = set()  # answered here while stopping; the SDK's late answer is dropped
    settled = anyio.Event()  # set when nothing is unanswered
    atomic = stat.S_ISFIFO(os.fstat(stdout).st_mode)  # a pipe takes a write of <= PIPE_BUF bytes whole or not at all

    async def read() -> None:
        # Lean calls still running at end of input finish (and are answered) before the output closes.
        async with incoming_send, outgoing.clone() as replies, anyio.create_task_group() as calls:

            async def reply(text: str) -> None:
                # A short line with nothing queued before it goes out at once, without a hand-off to the
                # writer task; anything else queues behind what is queued, so lines keep their order.
                nonlocal queued
                if atomic and not queued:
                    data = (text + "\n").encode("utf-8")
                    if len(data) <= select.PIPE_BUF:
                        with contextlib.suppress(BlockingIOError):
                            os.write(stdout, data)
                            return
                queued += 1
                await replies.send(text)

            leaned = _LeanCalls(lean, calls, reply) if lean is not None else None
            lines = _Lines()
            reading, watching = anyio.CancelScope(), anyio.CancelScope()
            stop_started = False

            async def stop_when_asked(stopping: anyio.Event) -> None:
                nonlocal settled, stop_started
                with watching:
                    await stopping.wait()
                    stop_started = True  # from here on, the stop finishes even if the input ends
                    if drain is not None:
                        await drain()
                    with anyio.move_on_after(2):  # the SDK writes the answers the drain produced
                        while unanswered:
                            settled = anyio.Event()
                            await settled.wait()
                    for key, request_id in list(unanswered.items()):
                        given_up.add(key)
                        del unanswered[key]
                        await reply(error_line(request_id, mcp_types.INTERNAL_ERROR, SHUTTING_DOWN))
                    reading.cancel()

            if stopping is not None:
                calls.start_soon(stop_when_asked, stopping)
            with reading:
                await read_lines(lines, leaned, reply)
            if not stop_started:
                watching.cancel()  # the input ended: nothing left to stop

    async def read_lines(lines: _Lines, leaned: _LeanCalls | None, reply: Callable[[str], Awaitable[None]]) -> None:
        async for chunk in _read_chunks(stdin):
            complete = lines.feed(chunk)
            if lines.overflowed:
                logger.warning("dropped a message over %d bytes", MAX_MESSAGE_BYTES)
                await reply(error_line(None, mcp_types.INVALID_REQUEST, TOO_LARGE))
            for raw in complete:
                if json_too_deep(raw):  # before any parser recurses into it
                    logger.info("rejected a JSON-RPC line nested over %d levels", MAX_JSON_DEPTH)
                    await reply(error_line(leading_id(raw), mcp_types.INVALID_REQUEST, TOO_DEEP))
                    continue
                if leaned is not None and any(marker in raw for marker in _LEAN_MARKERS):
                    with contextlib.suppress(ValueError):
                        if leaned.take(json.loads(raw)):
                            continue
                line = raw.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except pydantic.ValidationError as exc:
                    logger.info("rejected a malformed JSON-RPC line (%d bytes)", len(line))
                    answer = reject(line, exc)
                    if answer is not None:
                        await reply(answer)
                    continue
                if isinstance(message, mcp_types.JSONRPCNotification) and b'"id"' in raw:
                    problem = id_problem(json.loads(line))  # an "id" that is none: not a notification
                    if problem is not None:
                        await reply(error_line(None, mcp_types.INVALID_REQUEST, problem))
                        continue
                if isinstance(message, mcp_types.JSONRPCRequest):
                    unanswered[_key(message.id)] = message.id
                await incoming_send.send(SessionMessage(message))

    async def write() -> None:
        nonlocal queued
        async with outgoing_receive:
            async for item in outgoing_receive:
                if isinstance(item, str):
                    await _write_all(stdout, (item + "\n").encode("utf-8"))
                    queued -= 1
                    continue
                message = item.message
                if isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
                    key = _key(message.id)
                    if key in given_up:
                        continue  # answered already, while stopping
                    if unanswered.pop(key, None) is not None and not unanswered:
                        settled.set()
                text = message.model_dump_json(by_alias=True, exclude_unset=True)
                await _write_all(stdout, (text + "\n").encode("utf-8"))
        written.set()

    written = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            tg.start_soon(write)
            async with outgoing:
                yield incoming, outgoing
            # Let the last answers reach the client, then stop reading a stdin that may never close.
            with anyio.move_on_after(2):
                await written.wait()
            tg.cancel_scope.cancel()
    finally:
        for private in (stdin, stdout):
            if _pollable(private):
                os.set_blocking(private, True)  # the description may be shared, e.g. with a terminal
            os.close(private)
        os.dup2(saved[0], 0)
        os.dup2(saved[1], 1)
        os.close(saved[0])
        os.close(saved[1])
