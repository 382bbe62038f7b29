"""The sandbox process wrapper: started from a worker thread, its pipes read and its exit seen without the event
loop's child watcher, and never left running by a caller that was cancelled while it started."""

from __future__ import annotations

import os
import signal
import sys

import anyio
import pytest
from anyio.abc import ByteReceiveStream

from aperture.execution.code._process import spawn
from aperture.execution.code.sandbox import start_sandbox

pytestmark = pytest.mark.anyio


async def _drain(stream: ByteReceiveStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data


async def test_output_pipes_and_exit_status_are_read_off_the_loop() -> None:
    process = await spawn(
        [sys.executable, "-c", "import sys; print('out' * 30000); print('err', file=sys.stderr); sys.exit(3)"],
        pass_fds=(),
    )
    out, err = await _drain(process.stdout), await _drain(process.stderr)
    assert await process.wait() == 3
    assert process.returncode == 3
    assert out == b"out" * 30000 + b"\n" and err == b"err\n"
    await process.aclose()


async def test_the_child_starts_in_a_session_of_its_own_with_an_empty_environment() -> None:
    process = await spawn([sys.executable, "-c", "import os; print(os.getsid(0), sorted(os.environ))"], pass_fds=())
    out = await _drain(process.stdout)
    await process.aclose()
    sid, env = out.decode().split(" ", 1)
    assert int(sid) == process.pid and int(sid) != os.getsid(0)
    assert env.strip() in ("[]", "['LC_CTYPE']")  # (CPython itself may set LC_CTYPE)


async def test_a_killed_child_is_reaped_and_its_status_says_the_signal() -> None:
    process = await spawn([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=())
    process.kill()
    with anyio.fail_after(5):
        assert await process.wait() == -signal.SIGKILL
    await process.aclose()


async def test_a_caller_cancelled_while_the_sandbox_starts_leaves_nothing_running() -> None:
    started: list[int] = []
    with anyio.CancelScope() as scope:
        scope.cancel()  # (already cancelled when the start begins: the start itself is shielded)
        sandbox = await start_sandbox([sys.executable, "-c", "import time; time.sleep(60)"], bridge_fd_arg=False)
        started.append(sandbox.process.pid)
        await sandbox.aclose()
    assert started, "the shielded start returns its sandbox so that the caller can close it"
    with pytest.raises(ProcessLookupError):
        os.kill(started[0], 0)
