"""A sandbox process started from a thread of its own and watched without the event loop's child watcher.

Why not `anyio.open_process`: on asyncio it forks in the event loop's thread (about 1-3 ms a sandbox, longer on a
busy machine, during which no other call of the gateway moves), and Python 3.11's child watcher starts one more
thread per process. Here `subprocess.Popen` runs in the spawner thread (`_SPAWNER`), the pipes are read when the
loop says they are readable, and the exit is seen on a pidfd (Linux 5.3+; elsewhere, polled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from aperture.execution.code.cgroups import release, sandbox_cgroups

_POLL = 0.01  # seconds between exit checks where there is no pidfd

_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aperture-sandbox-spawner")
"""The one thread every sandbox starts from. Not an AnyIO worker thread: bwrap's --die-with-parent (and Linux's
parent-death signal under it) is tied to the thread that started it, and AnyIO retires worker threads idle for
10 s whenever another call needs one, which killed longer executions and warm interpreters of a busy gateway.
This thread lives as long as the process; a gateway that dies still takes its sandboxes with it."""


class PipeStream(ByteReceiveStream):
    """The read end of a child's stdout or stderr pipe, read without blocking the event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            anyio.notify_closing(fd)
            os.close(fd)


class SandboxProcess:
    """A started child: its pid, its two output pipes, and its exit status once it has exited."""

    def __init__(self, popen: subprocess.Popen[bytes], group: Path | None = None) -> None:
        assert popen.stdout is not None and popen.stderr is not None
        self._popen = popen
        self._group = group  # its own cgroup, removed once it has exited
        self.pid = popen.pid
        # The streams own the descriptors from here on; the Popen must not close them a second time.
        self.stdout = PipeStream(os.dup(popen.stdout.fileno()))
        self.stderr = PipeStream(os.dup(popen.stderr.fileno()))
        popen.stdout.close()
        popen.stderr.close()
        try:
            self._pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # (an old kernel, or not Linux)
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    async def wait(self) -> int:
        while (status := self._popen.poll()) is None:
            if self._pidfd is not None:
                await anyio.wait_readable(self._pidfd)
            else:
                await anyio.sleep(_POLL)
        return status

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Wait for it to exit (the caller killed it) and release its pipes and pidfd."""
        with anyio.CancelScope(shield=True):
            await self.wait()
            await self.stdout.aclose()
            await self.stderr.aclose()
            if self._pidfd is not None:
                fd, self._pidfd = self._pidfd, None
                anyio.notify_closing(fd)
                os.close(fd)
            release(self._group)


async def spawn(command: Sequence[str], *, pass_fds: Sequence[int]) -> SandboxProcess:
    """Start `command` from a worker thread in a new session at the lowest CPU weight, with an empty environment,
    stdin from /dev/null and stdout/stderr as pipes.

    Raises:
        OSError: it could not start.
    """
    started = _SPAWNER.submit(_popen, list(command), tuple(pass_fds))
    popen, group = await anyio.to_thread.run_sync(started.result)
    lowest_session_weight(popen.pid)
    return SandboxProcess(popen, group)


def lowest_session_weight(pid: int) -> None:
    """Nice the autogroup of `pid`'s session to 19, where the kernel groups sessions (Linux's autogroup, on by
    default on desktop and many server kernels).

    Why: with autogroup the scheduler shares a CPU fairly between sessions first and looks at a process's own
    nice only inside its session. A sandbox alone in its new session would weigh as much as the whole gateway
    however niced it is (bench.code: 20 CPU-bound executions made a concurrent run_tool's p99 6.5-9x its idle
    p99; 1.0-1.6x with the session niced). Raising a nice needs no privilege; without autogroup the file is absent
    and the process's own nice 19 does the job. What the sandbox can undo: its own nice it cannot lower (that
    needs CAP_SYS_NICE) and a new session (`setsid`) its seccomp filter refuses, but the kernel lets any process
    set its session's nice back to 0 (at most every 100 ms): a hostile program can regain a session's weight,
    as before this, within its CPU-time limit and the concurrency cap (docs/code-mode.md).
    """
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as autogroup:
        autogroup.write("19")


def _popen(command: list[str], pass_fds: tuple[int, ...]) -> tuple[subprocess.Popen[bytes], Path | None]:
    """The started process, in the sandboxes' cgroups where there are some (see `cgroups`), and its own group."""
    groups = sandbox_cgroups()
    group = None
    if groups is not None:
        command, group = groups.wrap(command)
    try:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            start_new_session=True,
            env={},  # bwrap's own pid-1 monitor keeps its environment: /proc/1/environ in the sandbox shows it
        )
    except OSError:
        release(group)
        raise
    return popen, group
