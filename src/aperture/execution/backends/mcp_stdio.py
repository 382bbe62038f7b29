"""Run an upstream MCP server as a child process and speak JSON-RPC with it over its stdin and stdout.

Unlike the SDK's `stdio_client`, this keeps what a gateway needs to explain a failure: the exit code
and the tail of the server's stderr. It bounds what the upstream can make us hold (a line without a
newline, a flood of stderr), and stops the whole process group on close, so no grandchild outlives
the gateway (`npx` servers run node under a shell).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
import anyio.abc
import mcp_types
import pydantic
import pydantic_core
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from aperture.execution.backends._lines import MAX_MESSAGE_BYTES, LineSplitter, LineTooLongError
from aperture.execution.backends.mcp_depth import TOO_DEEP, too_deep_answer
from aperture.execution.backends.mcp_env import DEFAULT_INHERITED_ENV, upstream_environment
from aperture.execution.backends.mcp_raw import RawChannel

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = MAX_MESSAGE_BYTES
STDERR_TAIL_LINES = 40
STOP_GRACE_SECONDS = 2.0
_LARGE_LINE = 64 * 1024


@dataclass
class ProcessWatch:
    """What is known about the child process: its pid, exit code, stderr tail, and why the link ended."""

    pid: int | None = None
    returncode: int | None = None
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    problem: str | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)

    def stderr_tail(self, lines: int = 10) -> str:
        return "\n".join(list(self.stderr)[-lines:])

    def describe(self) -> str:
        """One paragraph for an error message: exit code, problem, last stderr lines."""
        parts = []
        if self.problem:
            parts.append(self.problem)
        if self.returncode is not None:
            parts.append(f"exited with code {self.returncode}")
        tail = self.stderr_tail(5)
        if tail:
            parts.append(f"stderr ends with:\n{tail}")
        return "; ".join(parts) if parts else "the process ended"


@asynccontextmanager
async def stdio_upstream(
    command: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: Sequence[str] = DEFAULT_INHERITED_ENV,
    cwd: str | Path | None = None,
    watch: ProcessWatch | None = None,
    channel: RawChannel | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> AsyncIterator[TransportStreams]:
    """Start `command` and yield the MCP client streams to it; stop its process group on exit.

    The process gets the variables of the gateway's environment that `inherit_env` names (names or globs),
    then `env`, which wins. With a `channel`, the lines answering its requests go to it, and everything else
    to the streams. A line longer than `max_line_bytes` stops the upstream (`watch.problem` says why).

    Raises:
        FileNotFoundError: when the command does not exist (with the command named).
    """
    watch = watch if watch is not None else ProcessWatch()
    environment = upstream_environment(inherit_env, env or {})
    try:
        process = await anyio.open_process(
            [command, *args], stdin=PIPE, stdout=PIPE, stderr=PIPE, env=environment, cwd=cwd, start_new_session=True
        )
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"command not found: {command!r} (is it installed and on PATH?)") from exc
    watch.pid = process.pid
    reader_send, reader = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    writer, writer_receive = anyio.create_memory_object_stream[SessionMessage](0)

    abandoned = (lambda request_id: not channel.waits_for(request_id)) if channel is not None else None
    splitter = LineSplitter(max_line_bytes, abandoned)

    async def read_stdout() -> None:
        assert process.stdout is not None
        async with reader_send:
            try:
                async for chunk in process.stdout:
                    try:
                        lines = splitter.feed(chunk)
                    except LineTooLongError as exc:
                        watch.problem = f"{exc} (the backend's max_message_bytes)"
                        break
                    for line in lines:
                        if channel is not None and channel.wants(line) and channel.accept(_loads(line)):
                            continue
                        if line and not line.isspace():  # (strip would copy a long line)
                            await reader_send.send(_parse(line, watch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            finally:
                if channel is not None:
                    channel.close(watch.problem or "the upstream closed its output")
        await _stop(process)

    async def read_stderr() -> None:
        assert process.stderr is not None
        pending = b""
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in process.stderr:
                *lines, pending = (pending + chunk).split(b"\n")
                pending = pending[-4096:]  # a flood without newlines stays bounded
                for line in lines:
                    watch.stderr.append(line.decode("utf-8", "replace")[:1000])

    async def write_stdin() -> None:
        assert process.stdin is not None
        async with writer_receive:
            try:
                async for message in writer_receive:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode("utf-8"))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await reader_send.aclose()

    async def wait_exit() -> None:
        watch.returncode = await process.wait()
        watch.exited.set()
        if watch.returncode:
            logger.info("upstream %s (pid %s) exited with code %s", command, process.pid, watch.returncode)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_stdout)
            tg.start_soon(read_stderr)
            tg.start_soon(write_stdin)
            tg.start_soon(wait_exit)
            if channel is not None:
                stdin = process.stdin
                assert stdin is not None

                async def send_line(line: bytes, request_id: str | None) -> None:
                    await stdin.send(line)

                channel.open(send_line, tg)
            try:
                yield reader, writer
            finally:
                with anyio.CancelScope(shield=True):
                    await writer.aclose()
                    await _stop(process)
                    with anyio.move_on_after(STOP_GRACE_SECONDS):
                        await watch.exited.wait()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_SECONDS):
            await process.aclose()  # release the pipes; the process is already stopped


def _loads(line: bytes | bytearray) -> Any:
    # Depth first: a line nested too deep is never parsed, whichever parser would read it (jiter stops at
    # about 200 levels, past what the rest of the gateway may walk); it becomes an error for its request.
    answer = too_deep_answer(line)
    if answer is not None:
        return answer
    # The parse holds the event loop (and, in C, the GIL: a worker thread would not free it), so the
    # faster parser counts: jiter, the one the SDK's own messages go through, reads bytes at once (a
    # 60 MiB line in 0.12 s; json.loads decodes, then parses: 0.29 s). json.loads takes what jiter refuses.
    if len(line) >= _LARGE_LINE:
        with suppress(ValueError):
            return pydantic_core.from_json(line)
    try:
        return json.loads(line)
    except ValueError:
        return None  # not JSON: `_parse` reports it


def _parse(line: bytes | bytearray, watch: ProcessWatch) -> SessionMessage | Exception:
    answer = too_deep_answer(line)
    if answer is not None:  # never parsed: the request it answers gets an error, the connection goes on
        if answer["id"] is None:
            return ValueError(TOO_DEEP)
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_python(answer, by_name=False))
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except pydantic.ValidationError as exc:
        shown = line[:200].decode("utf-8", "replace")
        logger.warning("upstream sent a line that is not JSON-RPC: %s", shown)
        watch.stderr.append(f"[aperture] not JSON-RPC on stdout: {shown}")
        return exc


async def _stop(process: anyio.abc.Process) -> None:
    """Close stdin, give the server a moment, then SIGTERM and SIGKILL its whole process group."""
    if process.returncode is not None:
        _kill_group(process.pid, signal.SIGKILL)  # the leader is gone; its children may not be
        return
    if process.stdin is not None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await process.stdin.aclose()
    with anyio.move_on_after(STOP_GRACE_SECONDS / 2):
        await process.wait()
        _kill_group(process.pid, signal.SIGKILL)
        return
    _kill_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(STOP_GRACE_SECONDS / 2):
        await process.wait()
    _kill_group(process.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
