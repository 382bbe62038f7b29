"""The stdio transport, answering malformed lines with JSON-RPC errors instead of dropping them.

The SDK's `stdio_server` passes an unparseable line to the server as an exception, which is logged and
never answered: a client that sent a broken request would wait for ever. Here every line that is not
a valid JSON-RPC message gets a parse error (-32700) or an invalid-request error (-32600) carrying the
request's id when it has one. Like the SDK, fd 0 and fd 1 are diverted while serving, so stray prints
from tools cannot corrupt the wire.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
import pydantic
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)
READ_SIZE = 1 << 16


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
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return
        yield chunk


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


@asynccontextmanager
async def stdio_transport() -> AsyncIterator[
    tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]
]:
    """Streams for `Server.run` over this process's stdin and stdout."""
    sys.stdout.flush()
    saved = os.dup(0), os.dup(1)
    stdin, stdout = _claim(0), _claim(1)
    if _pollable(stdout):
        os.set_blocking(stdout, False)
    incoming_send, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, outgoing_receive = anyio.create_memory_object_stream[SessionMessage | str](16)

    async def read() -> None:
        async with incoming_send, outgoing.clone() as replies:
            buffer = b""
            async for chunk in _read_chunks(stdin):
                *lines, buffer = (buffer + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line:
                        continue
                    try:
                        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except pydantic.ValidationError as exc:
                        logger.info("rejected a malformed JSON-RPC line (%d bytes)", len(line))
                        answer = reject(line, exc)
                        if answer is not None:
                            await replies.send(answer)
                        continue
                    await incoming_send.send(SessionMessage(message))

    async def write() -> None:
        async with outgoing_receive:
            async for item in outgoing_receive:
                text = (
                    item if isinstance(item, str) else item.message.model_dump_json(by_alias=True, exclude_unset=True)
                )
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
