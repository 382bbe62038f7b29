"""The `wasm` runtime: each execution is CPython compiled to WebAssembly (npm's `pyodide`) in Node, with Node
itself inside the bwrap runtime's bubblewrap profile (no network, empty environment, read-only binds of only
Node, its libraries and the Pyodide folder, a tmpfs, seccomp) and under Node's permission model, with Node's
globals fenced off from the program. A small pool of interpreters is loaded ahead of time (Pyodide takes about
2 s to start); each runs exactly one program and is then killed, and a replacement starts loading at once.
See docs/code-mode.md for what it isolates and what not."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections import deque
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio

from aperture.execution.code import seccomp
from aperture.execution.code.bwrap import INSTALL_HINT as BWRAP_HINT
from aperture.execution.code.bwrap import sandbox_argv, system_library_mounts, which
from aperture.execution.code.runtime import Limits, OnCall, Outcome, register_runtime
from aperture.execution.code.sandbox import Sandbox, run_in, start_sandbox

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
HOST = HERE / "wasm_host.mjs"
PRELUDE = HERE / "_prelude.py"
PYODIDE_HINT = "install it in the Aperture checkout with: npm install (package.json lists pyodide)"
NODE_HINT = "install Node.js 20 or newer (Debian/Ubuntu: apt-get install nodejs)"
LOAD_TIMEOUT = 30.0
"""Seconds an interpreter may take to load before an execution gives up on it."""
LOAD_CPU_SECONDS = 15
"""CPU seconds an interpreter may use beyond the longest program, for loading (the wall clock limits the program)."""
MAX_PROGRAM_SECONDS = 60


def _default_pyodide() -> Path | None:
    """node_modules/pyodide in the working directory, or in the checkout this package runs from."""
    for root in (Path.cwd(), HERE.parents[3]):
        candidate = root / "node_modules" / "pyodide"
        if (candidate / "pyodide.mjs").is_file():
            return candidate.resolve()
    return None


PoolKey = tuple[int, int, int]
INSIDE = "/opt/aperture"
"""Where the sandbox sees Pyodide, the host script and the prelude."""


class WasmRuntime:
    """Pyodide in Node, under bubblewrap; a pool of `pool_size` interpreters loaded ahead of time.

    Args:
        node: the Node.js binary (default: `node` on PATH).
        pyodide: the folder of npm's pyodide package (default: node_modules/pyodide of the working directory or
            of the checkout).
        pool_size: interpreters kept loaded and waiting (0: every execution starts cold).
    """

    name = "wasm"

    def __init__(
        self, *, node: str | None = None, pyodide: str | None = None, pool_size: int = 1, **_options: Any
    ) -> None:
        found = node or which("node")
        self.node = os.path.realpath(found) if found else None
        self.pyodide = Path(pyodide).resolve() if pyodide else _default_pyodide()
        self.pool_size = pool_size
        self._pool: dict[PoolKey, deque[Sandbox]] = {}

    @cached_property
    def node_version(self) -> tuple[int, int] | None:
        """Node's (major, minor), or None when it does not run."""
        if self.node is None:
            return None
        try:
            out = subprocess.run([self.node, "--version"], capture_output=True, text=True, timeout=10, env={})
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
        return (int(match[1]), int(match[2])) if match else None

    def problem(self) -> str | None:
        """Why the wasm runtime cannot run here, with the fix; None when it can."""
        if sys.platform != "linux":
            return f"the wasm runtime runs Node inside bubblewrap, which needs Linux (this is {sys.platform})"
        missing = [tool for tool in ("bwrap", "prlimit", "nice") if which(tool) is None]
        if missing:
            hint = BWRAP_HINT if "bwrap" in missing else "install util-linux (it has prlimit)"
            return f"{' and '.join(missing)} not found on PATH: {hint}"
        if self.node is None:
            return f"node not found on PATH: {NODE_HINT}"
        if not os.access(self.node, os.X_OK):
            return f"{self.node} not found: {NODE_HINT}"
        if self.node_version is None or self.node_version < (20, 0):
            return f"{self.node} is not Node.js 20 or newer: {NODE_HINT}"
        if self.pyodide is None or not (self.pyodide / "pyodide.mjs").is_file():
            return f"npm's pyodide package not found (node_modules/pyodide): {PYODIDE_HINT}"
        return None

    @cached_property
    def seccomp(self) -> bytes | None:
        """The compiled seccomp filter (None without libseccomp)."""
        return seccomp.compiled_filter()

    def argv(self, limits: Limits, seccomp_fd: int | None) -> list[str]:
        """prlimit, nice, bwrap (the bwrap runtime's profile) around Node under its permission model running the
        host script; the bridge fd is appended by the sandbox."""
        assert self.node is not None and self.pyodide is not None and self.node_version is not None
        node_dir = os.path.dirname(self.node)
        mounts = ["--ro-bind", self.node, self.node, *system_library_mounts(skip=node_dir)]
        # At fixed places inside, whatever the checkout's path: one under /tmp would be hidden by the sandbox's
        # own /tmp.
        pyodide, host, prelude = f"{INSIDE}/pyodide", f"{INSIDE}/{HOST.name}", f"{INSIDE}/{PRELUDE.name}"
        for outside, inside in ((str(self.pyodide), pyodide), (str(HOST), host), (str(PRELUDE), prelude)):
            mounts += ["--ro-bind", outside, inside]
        permission = "--permission" if self.node_version >= (22, 13) else "--experimental-permission"
        node = [
            self.node,
            "--no-warnings",
            permission,
            f"--allow-fs-read={pyodide}/",
            f"--allow-fs-read={host}",
            f"--allow-fs-read={prelude}",
            "--disable-proto=delete",
            host,
            pyodide,
            prelude,
        ]
        # Wasm reserves far more address space than it uses, so memory is capped with RLIMIT_DATA (pages made
        # writable), not RLIMIT_AS; CPU covers loading plus the longest program (the wall clock stops it sooner).
        rlimits = [
            f"--cpu={MAX_PROGRAM_SECONDS + 1 + LOAD_CPU_SECONDS}",
            f"--data={limits.memory_bytes}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
        ]
        return sandbox_argv(limits, seccomp_fd, mounts=mounts, command=node, rlimits=rlimits)

    async def _start(self, limits: Limits) -> Sandbox:
        """A new interpreter, loading. Raises OSError when it cannot start."""
        program = self.seccomp
        if program is None:
            return await start_sandbox(self.argv(limits, None))
        fd = os.memfd_create("aperture-seccomp", 0)
        try:
            os.write(fd, program)
            os.lseek(fd, 0, os.SEEK_SET)
            return await start_sandbox(self.argv(limits, fd), pass_fds=(fd,))
        finally:
            os.close(fd)  # (bwrap has its own copy)

    async def warm(self, limits: Limits) -> None:
        """Fill the pool for executions with `limits`' memory, file and open-file caps."""
        if self.problem() is not None:
            return
        key = _key(limits)
        pool = self._pool.setdefault(key, deque())
        while len(pool) < self.pool_size:
            try:
                pool.append(await self._start(limits))
            except OSError as exc:
                logger.warning("code mode: a wasm interpreter could not start: %s", exc)
                return

    async def run(self, code: str, limits: Limits, on_call: OnCall) -> Outcome:
        """Run `code` on a warm interpreter (a cold one when the pool is empty); the pool is refilled at once."""
        started = time.perf_counter()
        problem = self.problem()
        if problem is not None:
            return Outcome(error=f"Code execution is unavailable: the wasm runtime cannot run here ({problem}).")
        pool = self._pool.get(_key(limits))
        try:
            sandbox = pool.popleft() if pool else await self._start(limits)
        except OSError as exc:
            return Outcome(error=f"The sandbox could not start ({exc}).", stopped="crashed")
        try:
            await self.warm(limits)  # (the replacements load in their own processes while this one runs)
            ready = await sandbox.wait_ready(LOAD_TIMEOUT)
        except BaseException:  # (cancelled: the interpreter taken for this run must not outlive it)
            await sandbox.aclose()
            raise
        if not ready:
            stderr = await _stderr_of(sandbox)
            await sandbox.aclose()
            return Outcome(
                error="The wasm interpreter did not start; try again, and tell the operator if it persists.",
                stopped="crashed",
                stderr=stderr.decode("utf-8", errors="replace")[: limits.max_output_bytes],
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        return await run_in(sandbox, code, limits, on_call, started=started)

    async def loaded(self, timeout: float = LOAD_TIMEOUT) -> None:
        """Wait until every pooled interpreter has loaded (for measurements: a warm figure starts from one)."""
        for pool in list(self._pool.values()):
            for sandbox in list(pool):
                await sandbox.wait_ready(timeout)

    @property
    def waiting(self) -> list[int]:
        """The process ids of the loaded interpreters waiting for a program."""
        return [sandbox.process.pid for pool in self._pool.values() for sandbox in pool]

    async def aclose(self) -> None:
        """Kill the waiting interpreters."""
        pools, self._pool = self._pool, {}
        for pool in pools.values():
            for sandbox in pool:
                await sandbox.aclose()


def _key(limits: Limits) -> PoolKey:
    return (limits.memory_bytes, limits.file_bytes, limits.open_files)


async def _stderr_of(sandbox: Sandbox) -> bytes:
    """What a sandbox that failed to load wrote to stderr (a little of it, without waiting long)."""
    if sandbox.process.stderr is None:
        return b""
    with anyio.move_on_after(0.5):
        try:
            return await sandbox.process.stderr.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return b""
    return b""


register_runtime(WasmRuntime.name, WasmRuntime)
