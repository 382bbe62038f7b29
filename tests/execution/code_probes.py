"""What the code-mode security tests of every runtime share (the `listener` fixture is in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aperture.model import InvalidRequestError

_since = 0
"""When (in clock ticks since boot, as /proc/PID/stat counts) the current test began: set by conftest."""


def mark_test_start() -> None:
    global _since
    _since = _uptime_ticks()


def sandboxes_left(marker: bytes, *, wait: float = 0.0) -> list[int]:
    """The processes whose command line holds `marker` and that started during the current test (so that a
    sandbox of another process on the machine, started before, is not counted), after waiting up to `wait`
    seconds for them to go."""
    deadline = time.monotonic() + wait
    while True:
        left = [pid for pid, started in _processes(marker) if started >= _since]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def _processes(marker: bytes) -> list[tuple[int, int]]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker in Path(f"/proc/{name}/cmdline").read_bytes():
                    stat = Path(f"/proc/{name}/stat").read_text()
                    found.append((int(name), int(stat.rsplit(")", 1)[1].split()[19])))  # field 22: start time
            except (OSError, ValueError, IndexError):
                continue
    return found


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def accepted(server: socket.socket) -> bool:
    """Whether anything connected to `server` (the connection, if any, is closed)."""
    try:
        server.accept()[0].close()
        return True
    except BlockingIOError:
        return False


class Calls:
    """A bridge callback that records each call, fails for 'bad:tool' as an unknown tool would, else echoes."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        self.seen.append((method, params))
        if params.get("tool_id") == "bad:tool":
            raise InvalidRequestError("No tool 'bad:tool'.")
        return {"method": method, "echo": params}


@contextmanager
def canary_process() -> Iterator[int]:
    """A `sleep` process a sandboxed program must not be able to signal; its pid."""
    canary = subprocess.Popen(["sleep", "30"])
    try:
        yield canary.pid
        assert canary.poll() is None, "the canary was signalled from the sandbox"
    finally:
        canary.kill()
        canary.wait()


def kill_program(*pids: int) -> str:
    """A program that SIGKILLs each of `pids`; its value lists, per pid, 'killed' or the exception it met."""
    return textwrap.dedent(
        f"""
        import os, signal
        out = []
        for pid in {pids!r}:
            try:
                os.kill(pid, signal.SIGKILL)
                out.append('killed')
            except (OSError, AttributeError) as e:
                out.append(type(e).__name__)
        out
        """
    )
