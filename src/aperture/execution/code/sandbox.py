"""The gateway's side of one sandboxed execution, for any runtime: start the command with the bridge socket
passed in, send the program, answer its tool calls, read its output within caps, and kill the whole process
tree when it finishes, overruns its time or output, or breaks the protocol."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, UNIXSocketStream

from aperture.execution.code._process import SandboxProcess, spawn
from aperture.execution.code.protocol import Bridge, BridgeError, parse_call
from aperture.execution.code.runtime import BridgedCall, Limits, OnCall, Outcome
from aperture.model import ApertureError

logger = logging.getLogger(__name__)

_GRACE = 1.0  # seconds a program that sent its result has to exit before it is killed
_MAX_TOOL_ERROR = 2000  # characters of a failed call's message passed back to the program


@dataclass
class _Output:
    name: str
    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0

    @property
    def over(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _Stop(Exception):
    """The execution ends here; `stopped` and `error` say why."""

    def __init__(self, stopped: str, error: str) -> None:
        super().__init__(error)
        self.stopped = stopped
        self.error = error


@dataclass(eq=False)
class Sandbox:
    """A started sandbox process with the gateway's end of its bridge, not yet given a program."""

    process: SandboxProcess
    stream: UNIXSocketStream
    ready: bool = False

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the one byte a runtime sends when its interpreter is loaded (a warm-pool runtime does);
        False when it did not come in `timeout` seconds or the sandbox ended."""
        with anyio.move_on_after(timeout):
            try:
                self.ready = self.ready or await self.stream.receive(1) == READY
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return False
        return self.ready

    async def aclose(self) -> None:
        """Kill it (its whole process group) and close its pipes and bridge."""
        _kill(self.process)
        with anyio.CancelScope(shield=True):
            await self.process.aclose()
            await self.stream.aclose()


READY = b"R"
"""What a runtime that loads its interpreter ahead of the program sends, once, before reading the program."""


async def start_sandbox(argv: Sequence[str], *, pass_fds: Sequence[int] = (), bridge_fd_arg: bool = True) -> Sandbox:
    """Start `argv` (a runtime's sandbox around its interpreter) with the bridge's fd passed in (and, with
    `bridge_fd_arg`, appended to `argv`), and `pass_fds`; in a new session, with an empty environment.

    Raises:
        OSError: it could not start.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    command = [*argv, str(theirs.fileno())] if bridge_fd_arg else list(argv)
    # Shielded: a process started and then forgotten by a cancelled caller would outlive it.
    with anyio.CancelScope(shield=True):
        try:
            process = await spawn(command, pass_fds=(theirs.fileno(), *pass_fds))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        sandbox = Sandbox(process, await UNIXSocketStream.from_socket(ours))
    return sandbox


async def run_sandboxed(
    argv: Sequence[str],
    code: str,
    limits: Limits,
    on_call: OnCall,
    *,
    pass_fds: Sequence[int] = (),
    bridge_fd_arg: bool = True,
) -> Outcome:
    """Run `argv` (a runtime's sandbox around the prelude) on `code`: `start_sandbox`, then `run_in`.

    Returns:
        the `Outcome`; this never raises for what the program does.
    """
    started = time.perf_counter()
    try:
        sandbox = await start_sandbox(argv, pass_fds=pass_fds, bridge_fd_arg=bridge_fd_arg)
    except OSError as exc:
        return Outcome(error=f"The sandbox could not start ({exc}).", stopped="crashed")
    return await run_in(sandbox, code, limits, on_call, started=started)


async def run_in(
    sandbox: Sandbox, code: str, limits: Limits, on_call: OnCall, *, started: float | None = None
) -> Outcome:
    """Send `code` to a started sandbox, answer its tool calls, read its output within caps, and kill it at the
    end. `started` (a `time.perf_counter()` value) is where its duration counts from (default: now).

    Returns:
        the `Outcome`; this never raises for what the program does.
    """
    started = time.perf_counter() if started is None else started
    process, stream = sandbox.process, sandbox.stream
    outputs = (_Output("stdout", limits.max_output_bytes), _Output("stderr", limits.max_output_bytes))
    bridge = Bridge(stream, max_frame=limits.max_frame_bytes, max_bytes=limits.max_bridge_bytes)
    calls: list[BridgedCall] = []
    done: dict[str, Any] | None = None
    stop: _Stop | None = None
    try:
        async with anyio.create_task_group() as readers:
            assert process.stdout is not None and process.stderr is not None
            readers.start_soon(_read, process.stdout, outputs[0], process)
            readers.start_soon(_read, process.stderr, outputs[1], process)
            with anyio.move_on_after(limits.timeout) as deadline:
                try:
                    done = await _exchange(bridge, code, limits, on_call, calls)
                    if done is not None:
                        with anyio.move_on_after(_GRACE):
                            await process.wait()
                except _Stop as stopped:
                    stop = stopped
            _kill(process)
            if deadline.cancelled_caught:
                stop = _Stop(
                    "timeout",
                    f"The program was stopped at its time limit ({round(limits.timeout * 1000)} ms); make it "
                    "do less, or give a larger timeout_ms (at most 60000).",
                )
    finally:
        await sandbox.aclose()  # (waits for it, and closes its pipes)
    for output in outputs:
        if output.over and stop is None:
            stop = _Stop(
                "output",
                f"The program printed more than {output.cap} bytes to {output.name} and was stopped; print less "
                "(the final expression's value is the result).",
            )
    duration = (time.perf_counter() - started) * 1000
    resources: dict[str, Any] = {
        "bridgeBytes": bridge.bytes,
        "stdoutBytes": outputs[0].total,
        "stderrBytes": outputs[1].total,
    }
    if done is not None:  # (as the sandbox measured itself)
        resources.update({k: done[k] for k in ("cpuMs", "maxRssKb") if isinstance(done.get(k), int | float)})
    common: dict[str, Any] = {
        "stdout": outputs[0].text(),
        "stderr": outputs[1].text(),
        "duration_ms": duration,
        "calls": tuple(calls),
        "resources": resources,
    }
    if stop is not None:
        return Outcome(error=stop.error, stopped=stop.stopped, **common)
    if done is None:
        status = process.returncode
        how = f"killed by signal {-status}" if status is not None and status < 0 else f"exit status {status}"
        return Outcome(
            error=f"The program's interpreter ended without a result ({how}): it went over a resource limit "
            "(memory, CPU, processes, files) or exited; the stderr field may say more.",
            stopped="crashed",
            **common,
        )
    if not done.get("ok"):
        return Outcome(error=f"The program failed: {str(done.get('error'))[:_MAX_TOOL_ERROR]}", **common)
    return Outcome(value=done.get("value"), **common)


async def _exchange(
    bridge: Bridge, code: str, limits: Limits, on_call: OnCall, calls: list[BridgedCall]
) -> dict[str, Any] | None:
    """Send the program, answer its calls; its `done` message, or None when the sandbox ended without one.

    Raises:
        _Stop: a broken protocol, or too many calls.
    """
    try:
        await bridge.send({"op": "start", "code": code})
        while True:
            message = await bridge.receive()
            if message is None:
                return None
            if message.get("op") == "done":
                return message
            method, params = parse_call(message)
            if len(calls) >= limits.max_tool_calls:
                raise _Stop(
                    "tool_calls",
                    f"The program was stopped at its limit of {limits.max_tool_calls} tool calls; make fewer "
                    "calls, or give a larger max_tool_calls (at most 1000).",
                )
            calls.append(await _answer(bridge, method, params, on_call))
    except BridgeError as exc:
        raise _Stop("bridge", f"The program was stopped: {exc}. Call tools through the tools object.") from None
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return None


async def _answer(bridge: Bridge, method: str, params: dict[str, Any], on_call: OnCall) -> BridgedCall:
    target = str(params.get("query" if method == "search" else "tool_id", ""))[:200]
    started = time.perf_counter()
    try:
        value = await on_call(method, params)
    except ApertureError as exc:
        error = exc.message[:_MAX_TOOL_ERROR]
        await bridge.send({"ok": False, "error": error})
        return BridgedCall(
            method=method, target=target, duration_ms=(time.perf_counter() - started) * 1000, ok=False, error=error
        )
    duration = (time.perf_counter() - started) * 1000
    await bridge.send({"ok": True, "value": value})
    return BridgedCall(method=method, target=target, duration_ms=duration, ok=True)


async def _read(source: ByteReceiveStream, output: _Output, process: SandboxProcess) -> None:
    """Keep the first `cap` bytes of `source`; past them, kill the program (so it cannot fill the disk or
    memory with output, nor block on a full pipe)."""
    try:
        async for chunk in source:
            output.total += len(chunk)
            room = output.cap - len(output.data)
            if room > 0:
                output.data += chunk[:room]
            if output.over:
                _kill(process)
                return
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return


def _kill(process: SandboxProcess) -> None:
    """SIGKILL the sandbox's process group (the runtime's wrapper and, with it, every process in the sandbox)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # (not our group any more)
        process.kill()
