"""The `bwrap` runtime: each execution is a fresh CPython in a bubblewrap sandbox, with new user, PID,
network, IPC, UTS and mount namespaces (no network at all), an empty environment, only the interpreter's
prefix and the system libraries mounted read-only, a small private tmpfs as the only writable place, rlimits,
a seccomp filter, and the lowest CPU priority. See docs/code-mode.md for what it isolates and what not."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from aperture.execution.code import seccomp
from aperture.execution.code.runtime import Limits, OnCall, Outcome, register_runtime
from aperture.execution.code.sandbox import run_sandboxed

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
SANDBOX_UID = 65534  # nobody, inside the sandbox's user namespace
_SYSTEM_LIBRARIES = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32")
PRELUDE = (Path(__file__).parent / "_prelude.py").read_text()


class BwrapRuntime:
    """CPython under bubblewrap; one process tree per execution, killed at its end."""

    name = "bwrap"

    def __init__(self, *, interpreter: str | None = None, **_options: Any) -> None:
        self.interpreter = os.path.realpath(interpreter or sys.executable)
        self.prefix = os.path.realpath(sys.base_prefix)

    async def warm(self, limits: Limits) -> None:
        """Nothing to do: a sandbox starts in tens of milliseconds."""

    async def aclose(self) -> None:
        """Nothing runs between executions."""

    def problem(self) -> str | None:
        """Why bwrap cannot run here, with the fix; None when it can."""
        if sys.platform != "linux":
            return f"the bwrap runtime needs Linux (this is {sys.platform}); choose another runtime"
        missing = [tool for tool in ("bwrap", "prlimit", "nice") if self._which(tool) is None]
        if missing:
            hint = INSTALL_HINT if "bwrap" in missing else "install util-linux (it has prlimit)"
            return f"{' and '.join(missing)} not found on PATH: {hint}"
        if not self.interpreter.startswith(self.prefix + os.sep):
            return f"the interpreter {self.interpreter} is not under its prefix {self.prefix}"
        return None

    @staticmethod
    def _which(tool: str) -> str | None:
        return which(tool)

    @cached_property
    def seccomp(self) -> bytes | None:
        """The compiled seccomp filter (None without libseccomp)."""
        return seccomp.compiled_filter()

    def argv(self, limits: Limits, seccomp_fd: int | None) -> list[str]:
        """The command line: prlimit's rlimits, nice 19, then bwrap around the interpreter and the prelude."""
        mounts = ["--ro-bind", self.prefix, self.prefix]
        site = sysconfig.get_path("purelib", vars={"base": self.prefix})
        if os.path.isdir(site):  # the base interpreter's own installed packages stay out: the standard library only
            mounts += ["--tmpfs", site, "--remount-ro", site]
        mounts += system_library_mounts(skip=self.prefix)
        python = [self.interpreter, "-I", "-S", "-B", "-c", PRELUDE]
        return sandbox_argv(limits, seccomp_fd, mounts=mounts, command=python)

    async def run(self, code: str, limits: Limits, on_call: OnCall) -> Outcome:
        """Run `code` in a fresh sandbox (see the module's docstring)."""
        problem = self.problem()
        if problem is not None:
            return Outcome(error=f"Code execution is unavailable: the bwrap runtime cannot run here ({problem}).")
        program = self.seccomp
        if program is None:
            return await run_sandboxed(self.argv(limits, None), code, limits, on_call)
        fd = os.memfd_create("aperture-seccomp", 0)
        try:
            os.write(fd, program)
            os.lseek(fd, 0, os.SEEK_SET)
            return await run_sandboxed(self.argv(limits, fd), code, limits, on_call, pass_fds=(fd,))
        finally:
            os.close(fd)


def which(tool: str) -> str | None:
    """`tool` on PATH, else in /usr/bin or /bin (the gateway may run with an empty PATH)."""
    return shutil.which(tool) or next((p for p in (f"/usr/bin/{tool}", f"/bin/{tool}") if os.access(p, os.X_OK)), None)


def system_library_mounts(*, skip: str = "") -> list[str]:
    """Read-only binds of the system's shared-library folders (the interpreter and its extensions load them),
    except one that holds `skip` (already bound)."""
    mounts: list[str] = []
    for path in _SYSTEM_LIBRARIES:
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path) and not (skip and skip.startswith(path + os.sep)):
            mounts += ["--ro-bind", path, path]
    return mounts


def sandbox_argv(
    limits: Limits,
    seccomp_fd: int | None,
    *,
    mounts: Sequence[str],
    command: Sequence[str],
    rlimits: Sequence[str] | None = None,
) -> list[str]:
    """The bubblewrap profile every runtime shares, around `command`: prlimit's rlimits (default: CPU, address
    space, file size, open files from `limits`), nice 19, then bwrap with new namespaces (no network), an empty
    environment, an unprivileged uid, no capabilities, `mounts` read-only, /proc, /dev, a tmpfs /tmp of
    `limits.file_bytes` as the only writable place, and the seccomp filter at `seccomp_fd`."""
    prlimit, nice, bwrap = (which(tool) for tool in ("prlimit", "nice", "bwrap"))
    assert prlimit is not None and nice is not None and bwrap is not None, "check problem() first"
    if rlimits is None:
        rlimits = [
            f"--cpu={limits.cpu_seconds}",
            f"--as={limits.memory_bytes}",
            f"--fsize={limits.file_bytes}",
            f"--nofile={limits.open_files}",
        ]
    sandbox = [
        "--unshare-all",
        "--die-with-parent",
        # No --new-session: the sandbox is already in a session of its own without a terminal (spawn starts one),
        # and a second session would be a second autogroup, which spawn's nice does not reach.
        "--clearenv",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--cap-drop",
        "ALL",
        *mounts,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.file_bytes),
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
    ]
    if seccomp_fd is not None:
        sandbox += ["--seccomp", str(seccomp_fd)]
    return [prlimit, *rlimits, "--", nice, "-n", "19", bwrap, *sandbox, "--", *command]


register_runtime(BwrapRuntime.name, BwrapRuntime)
