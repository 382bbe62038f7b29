"""The seccomp filter the bwrap runtime hands bubblewrap (`--seccomp FD`): the sandbox may not create
processes (threads stay allowed), open network sockets, trace, or reach the kernel's keyring and module
calls. Compiled once with libseccomp through PyPI's `pyseccomp`; None where libseccomp is missing."""

from __future__ import annotations

import errno
import logging
import socket
import tempfile
from functools import cache

logger = logging.getLogger(__name__)

_CLONE_THREAD = 0x00010000
_DENIED = (
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "unshare",
    "setns",
    "mount",
    "pivot_root",
    "chroot",
    "setsid",  # a new session would be a new autogroup, out of the lowest CPU weight spawn gives the sandbox's
)
_DENIED_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET)

INSTALL_HINT = "install libseccomp (Debian: apt-get install libseccomp2) and the 'pyseccomp' package"


@cache
def compiled_filter() -> bytes | None:
    """The BPF program, or None (logged once) when pyseccomp or libseccomp.so is not there."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as exc:  # pyseccomp raises when it cannot load libseccomp.so
        logger.warning("code mode runs without a seccomp filter (%s): %s", exc, INSTALL_HINT)
        return None
    denied = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in _DENIED:
        rules.add_rule(denied, name)
    # clone3 passes its flags in a struct a filter cannot read: ENOSYS makes the C library fall back to clone,
    # whose flags it can: a thread (CLONE_THREAD) is allowed, a process is not.
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(denied, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    for family in _DENIED_FAMILIES:
        rules.add_rule(sc.ERRNO(errno.EACCES), "socket", sc.Arg(0, sc.EQ, int(family)))
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()
