"""Sandboxes in cgroups of their own, where the gateway may make them (cgroup v1 `cpu` and `pids` hierarchies it
can write to, as root on a host or a container with them mounted read-write).

Why, beside nice 19 and the session's autogroup nice (`_process.lowest_session_weight`): the kernel lets any
process set its own session's autogroup nice back to 0, so a hostile program could regain a session's CPU
weight (measured: two such programs made a concurrent run_tool's p99 8.7x its idle p99). A task in a cgroup
other than the root one is out of autogroup altogether, and a cgroup's weight is set from outside: every
sandbox joins one group with a nice-19 task's CPU weight (`CPU_SHARES`) and a group of its own capped at
`PIDS_PER_SANDBOX` tasks (threads count), and nothing inside can leave them (the sandbox has no cgroup file
system, and its seccomp filter refuses mount). Where no writable hierarchy is found (cgroup v2, an unprivileged
gateway), sandboxes run as before, and a log line says so.

The sandboxes' CPU group sits beside one holding the gateway process itself, under a group of this gateway's
(`aperture-<pid>/gateway` and `aperture-<pid>/sandboxes`): the low weight is against the gateway, not against
the whole machine. As siblings of every other process, nice-19-weight sandboxes got next to nothing on a host
busy with other work (load 18 on 2 cores: executions ran into their time limits before the interpreter had
started); nested, they share the gateway's own part of the machine and yield to the gateway within it. The
gateway weighs as before: out of the root group it is out of autogroup, and its group has a session's weight.

A sandbox joins before bubblewrap starts: its command line begins with `sh`, which writes its own pid into the
groups and then becomes the rest of the command (no window in which a process of the sandbox runs outside).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

PIDS_PER_SANDBOX = 64
"""Tasks (processes and threads) one sandbox may hold: Node's own threads and a program's few, not a bomb."""

CPU_SHARES = 15
"""The sandboxes' CPU weight together: a nice-19 task's (the gateway's tasks weigh 1024). Not `cpu.idle`, which
gives them only the time nobody else wants: on a busy machine every execution then ran into its time limit."""

# `unset PWD`: sh exports the working directory it starts in, and bwrap's pid-1 monitor keeps its environment
# (the sandbox can read /proc/1/environ): the environment stays empty.
_JOIN = 'unset PWD; while [ "$1" != -- ]; do echo 0 > "$1" 2>/dev/null; shift; done; shift; exec "$@"'


@dataclass
class SandboxCgroups:
    """The groups sandboxes of this gateway process join: `cpu`, shared, at `CPU_SHARES` (beside the gateway's
    own group); under `pids`, one per sandbox, capped at `PIDS_PER_SANDBOX`."""

    cpu: Path | None
    pids: Path | None
    shell: str
    _numbers: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def describe(self) -> str:
        held = [name for name, path in (("cpu weight", self.cpu), ("process count", self.pids)) if path]
        return f"sandboxes' {' and '.join(held)} held by cgroups" if held else "no writable cgroup"

    def wrap(self, command: list[str]) -> tuple[list[str], Path | None]:
        """`command` preceded by joining the groups, and the sandbox's own group (to remove once it has exited)."""
        procs = [self.cpu / "cgroup.procs"] if self.cpu else []
        own: Path | None = None
        if self.pids is not None:
            own = self.pids / str(next(self._numbers))
            try:
                own.mkdir()
                (own / "pids.max").write_text(str(PIDS_PER_SANDBOX))
                procs.append(own / "cgroup.procs")
            except OSError as exc:
                logger.debug("no cgroup of its own for a sandbox: %s", exc)
                with contextlib.suppress(OSError):
                    own.rmdir()
                own = None
        if not procs:
            return command, None
        return [self.shell, "-c", _JOIN, "aperture-sandbox", *map(str, procs), "--", *command], own


_leftover: list[Path] = []
"""Groups not yet empty when released: the sandbox's inner processes, orphaned when bwrap is killed, are reaped
a moment after it. Removed on a later release, and at exit."""
_leftover_lock = threading.Lock()  # (released from the event loop's thread and from the spawner thread)


def release(group: Path | None) -> None:
    """Remove a sandbox's own group once its processes are gone (now, or on a later call), and leftovers."""
    with _leftover_lock:
        if group is not None:
            _leftover.append(group)
        for old in list(_leftover):
            try:
                old.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            _leftover.remove(old)


@cache
def sandbox_cgroups() -> SandboxCgroups | None:
    """The groups for this process's sandboxes, made on first use; None where there is no writable hierarchy."""
    shell = shutil.which("sh") or ("/bin/sh" if os.access("/bin/sh", os.X_OK) else None)
    if shell is None:
        return None
    cpu = _cpu_groups()
    pids = _make_group("pids", f"aperture-sandboxes-{os.getpid()}")
    if cpu is None and pids is None:
        logger.info("code mode: no writable cgroup; sandboxes are held by their own and their session's nice")
        return None
    groups = SandboxCgroups(cpu=cpu, pids=pids, shell=shell)
    logger.info("code mode: %s", groups.describe())
    atexit.register(_remove, pids)
    return groups


def _cpu_groups() -> Path | None:
    """`aperture-<pid>/sandboxes` at `CPU_SHARES`, with the gateway process moved into `aperture-<pid>/gateway`
    (where the gateway cannot be moved, the whole `aperture-<pid>` at `CPU_SHARES`: sandboxes then yield to every
    process, as a flat group would); None where no group can be made."""
    parent = _make_group("cpu", f"aperture-{os.getpid()}")
    if parent is None:
        return None
    gateway, sandboxes = parent / "gateway", parent / "sandboxes"
    try:
        gateway.mkdir(exist_ok=True)
        sandboxes.mkdir(exist_ok=True)
    except OSError:
        _remove(gateway, sandboxes, parent)
        return None
    if not _set(sandboxes, "cpu.shares", str(CPU_SHARES)):
        _remove(gateway, sandboxes, parent)
        return None
    if not _set(gateway, "cgroup.procs", str(os.getpid())):
        logger.info("code mode: the gateway cannot join its own cgroup; sandboxes yield to every process")
        _remove(gateway)
        if not _set(parent, "cpu.shares", str(CPU_SHARES)):
            _remove(sandboxes, parent)
            return None
    atexit.register(_leave, parent.parent, gateway, sandboxes, parent)
    return sandboxes


def _leave(home: Path, *groups: Path) -> None:
    """At exit: the gateway back in the group it came from, and its groups removed (those still holding processes,
    such as an upstream server outliving the gateway, stay until a later gateway finds them empty)."""
    _set(home, "cgroup.procs", str(os.getpid()))
    _remove(*groups)


def _remove(*groups: Path | None) -> None:
    release(None)
    for group in groups:
        if group is not None:
            with contextlib.suppress(OSError):
                group.rmdir()


def _make_group(controller: str, name: str) -> Path | None:
    """`name` under this process's own group of the cgroup v1 hierarchy that has `controller`, removing the groups
    of gateways that have exited; None if there is none or it is not writable."""
    own = _own_v1_path(controller)
    mount = _v1_mount(controller)
    if own is None or mount is None:
        return None
    point, root = mount
    relative = os.path.relpath(own, root) if own != root else "."
    if relative.startswith(".."):
        return None
    parent = Path(point) / relative
    for stale in parent.glob("aperture-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(stale)
    group = parent / name
    try:
        group.mkdir(exist_ok=True)
    except OSError:
        return None
    return group if os.access(group / "cgroup.procs", os.W_OK) else None


def _remove_tree(group: Path) -> None:
    """`group` and the groups below it (those of gateways it started, nested in its own), deepest first; a group
    that still holds a process stays."""
    with contextlib.suppress(OSError):
        for child in group.iterdir():
            if child.is_dir():
                _remove_tree(child)
        group.rmdir()


def _set(group: Path, name: str, value: str) -> bool:
    try:
        (group / name).write_text(value)
    except OSError:
        return False
    return True


def _own_v1_path(controller: str) -> str | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _v1_mount(controller: str) -> tuple[str, str] | None:
    """(mount point, root within the hierarchy) of the cgroup v1 hierarchy with `controller`, mounted read-write."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts, tail = fields.split(), rest.split()
        if len(parts) < 6 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        if controller in tail[2].split(",") and "rw" in parts[5].split(","):
            return parts[4], parts[3]
    return None
