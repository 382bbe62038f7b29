"""Load capability files from directories: every `*.yaml` / `*.yml`, each problem reported with path, line and
reason, broken files skipped (or, on reload, kept at their last good version).

A reload parses only what changed: a file whose status (inode, size, mtime, ctime) is as it was, and was already
settled when it was read, is not even opened; any other file is read and compared byte for byte with what was
parsed before.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import pydantic
import yaml

from aperture.execution.capabilities._fastyaml import load_yaml
from aperture.execution.capabilities.spec import (
    Capability,
    CapabilityFile,
    Loc,
    SpecError,
    compile_capability,
    dotted,
)
from aperture.execution.yaml_lines import line_of
from aperture.model import InvalidToolIdError, Tool

logger = logging.getLogger(__name__)

_PIN_LINE = re.compile(rb"^sha256[ \t]*:[^\n]*(?:\n|$)", re.MULTILINE)
SUFFIXES = (".yaml", ".yml")
SETTLE_NS = 2_000_000_000
"""A file changed less than this long before it was read may change again within the same timestamp tick, so its
status alone is not trusted at the next load: it is read and compared (the "racy" case of git's index)."""


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Something wrong with one file (or directory): where, and what to do about it."""

    path: Path
    reason: str
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "line": self.line, "severity": self.severity, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CapabilitySet:
    """One consistent set of capabilities: lookup by name in O(1), tool shapes built once per load."""

    by_name: Mapping[str, Capability] = field(default_factory=dict)
    tools: tuple[Tool, ...] = ()

    @classmethod
    def of(cls, capabilities: Iterable[Capability]) -> CapabilitySet:
        by_name = {cap.name: cap for cap in capabilities}
        return cls(MappingProxyType(by_name), tuple(cap.tool for cap in by_name.values()))

    def get(self, name: str) -> Capability | None:
        return self.by_name.get(name)

    def from_file(self, path: Path) -> list[Capability]:
        return [cap for cap in self.by_name.values() if cap.path == path]

    def __len__(self) -> int:
        return len(self.by_name)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The outcome of reading the directories once."""

    capabilities: CapabilitySet
    problems: tuple[LoadProblem, ...] = ()
    files: int = 0
    seconds: float = 0.0
    read: int = 0
    """Files opened and compared with what was parsed before (the others' status showed them unchanged)."""
    parsed: int = 0
    """Files parsed and compiled (new or changed); the others' capabilities are reused as they were."""

    @property
    def errors(self) -> list[LoadProblem]:
        return [p for p in self.problems if p.severity == "error"]

    def summary(self) -> str:
        """`12 capabilities from 13 files; 1 error, 0 warnings`, plus the first error."""
        errors = self.errors
        text = (
            f"{len(self.capabilities)} capabilities from {self.files} files; {len(errors)} errors, "
            f"{len(self.problems) - len(errors)} warnings"
        )
        return text + (f" (first: {errors[0]})" if errors else "")


def pin_digest(raw: bytes) -> str:
    """The sha256 a file is pinned with: of its bytes without its own top-level `sha256:` line."""
    return hashlib.sha256(_PIN_LINE.sub(b"", raw)).hexdigest()


def capability_files(directory: Path) -> list[Path]:
    """The capability files under `directory`, sorted, leaving out hidden files and folders."""
    return [Path(where) for where, _ in _scan(directory)]


def _scan(directory: Path) -> list[tuple[str, os.stat_result]]:
    """Each capability file under `directory` with its status, in path order (folders' parts compared in turn).

    Like `rglob`: symlinked files count, symlinked folders are not entered, unreadable folders are passed over.
    Paths stay strings: making and hashing 5,000 `Path`s costs more than the whole scan.
    """
    found: list[tuple[tuple[str, ...], str, os.stat_result]] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(str(directory), ())]
    while pending:
        folder, parts = pending.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError:
            continue
        for entry in listed:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir():
                if not entry.is_symlink():
                    pending.append((entry.path, (*parts, name)))
            elif name.endswith(SUFFIXES):
                try:
                    status = entry.stat()
                except OSError:
                    continue  # a dangling symlink
                if stat.S_ISREG(status.st_mode):
                    found.append(((*parts, name), entry.path, status))
    found.sort(key=lambda item: item[0])
    return [(where, status) for _, where, status in found]


def _read(path: str, size: int) -> bytes:
    """The bytes of `path`, whose status said `size`: one read when it still has that size.

    Plain `os` calls rather than `Path.read_bytes`: each system call lets other threads take the interpreter, and
    `open()` makes about eight per file against three here, which doubles the time of a reload while the event loop
    is busy (searches).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data  # a regular file gives all it has up to the size asked for: this is the end
        parts = [data]
        while chunk := os.read(fd, max(size, 1 << 16)):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What one file gave at the last load, and the file status it was read with."""

    path: Path
    status: tuple[int, int, int, int, int]
    settled: bool
    """The file had not changed for `SETTLE_NS` when it was read: the same status later means the same bytes."""
    raw: bytes
    capability: Capability | None
    problems: tuple[LoadProblem, ...]


class _CollectorPause:
    """Holds off Python's cyclic garbage collector while files are parsed (a re-entrant, thread-safe switch).

    Parsing 5,000 files allocates about a million short-lived objects (YAML nodes and marks) beside the tens of
    thousands that stay (the capabilities). Left on, the collector runs hundreds of times meanwhile, promotes node
    trees it catches in the middle of a parse, and makes two full passes over the whole process, then a third soon
    after: in the gateway, a quarter of a reload of 5,000 changed files. Paused, the short-lived objects go by
    reference counting alone, and only the one full pass that the new capabilities call for is left, after the
    load. The collector is left as it was found: a process that turned it off keeps it off.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()


_PAUSE_COLLECTOR = _CollectorPause()


def _status_key(status: os.stat_result) -> tuple[int, int, int, int, int]:
    # ctime too: tools that restore mtime (cp -p, rsync -t, tar) cannot restore it
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class CapabilityLoader:
    """Reads directories into `CapabilitySet`s, re-parsing only the files whose bytes changed since last time."""

    def __init__(self, namespace: str, directories: Sequence[Path]) -> None:
        self.namespace = namespace
        self.directories = [Path(d) for d in directories]
        self._parsed: dict[str, _Parsed] = {}

    def existing_directories(self) -> list[Path]:
        return [d for d in self.directories if d.is_dir()]

    def load(self, previous: CapabilitySet | None = None) -> LoadReport:
        """Read every file now. A file that no longer loads keeps its capabilities from `previous`."""
        with _PAUSE_COLLECTOR:
            return self._load(previous)

    def _load(self, previous: CapabilitySet | None) -> LoadReport:
        started = time.perf_counter()
        settled_before = time.time_ns() - SETTLE_NS
        problems: list[LoadProblem] = []
        files: list[tuple[str, os.stat_result]] = []
        for directory in self.directories:
            if not directory.is_dir():
                problems.append(
                    LoadProblem(
                        directory,
                        "the directory does not exist: create it (then reload) or fix 'directories' in the "
                        "configuration",
                    )
                )
                continue
            files += _scan(directory)
        found: dict[str, Capability] = {}
        parsed: dict[str, _Parsed] = {}
        read = compiled = 0
        last_good: dict[Path, list[Capability]] | None = None
        for where, status in files:
            key = _status_key(status)
            entry = self._parsed.get(where)
            if entry is None or not entry.settled or entry.status != key:
                path = entry.path if entry is not None else Path(where)
                try:
                    raw = _read(where, status.st_size)
                except OSError as exc:
                    problems.append(LoadProblem(path, f"cannot read the file: {exc.strerror or exc}"))
                    continue
                read += 1
                settled = max(status.st_mtime_ns, status.st_ctime_ns) < settled_before
                if entry is not None and entry.raw == raw:
                    entry = replace(entry, status=key, settled=settled)
                else:
                    capability, file_problems = parse_file(path, raw, self.namespace)
                    entry = _Parsed(path, key, settled, raw, capability, tuple(file_problems))
                    compiled += 1
            parsed[where] = entry
            path, capability = entry.path, entry.capability
            problems += entry.problems
            if capability is not None:
                kept = [capability]
            else:
                if last_good is None:  # grouped once, on the first file that does not load
                    last_good = _by_path(previous)
                kept = self._keep(last_good.get(path, []), path, problems)
            for cap in kept:
                name = cap.name
                other = found.get(name)
                if other is not None:
                    problems.append(
                        LoadProblem(
                            path,
                            f"the name '{name}' is also defined in {other.path}; this file replaces it (later "
                            "files win). Rename one of them to keep both",
                            severity="warning",
                        )
                    )
                    del found[name]  # the replacement goes to the end, as the later definition
                found[name] = cap
        self._parsed = parsed
        for problem in problems:
            log = logger.warning if problem.severity == "error" else logger.info
            log("capabilities %s: %s", self.namespace, problem)
        return LoadReport(
            CapabilitySet.of(found.values()),
            tuple(problems),
            len(files),
            time.perf_counter() - started,
            read=read,
            parsed=compiled,
        )

    @staticmethod
    def _keep(kept: list[Capability], path: Path, problems: list[LoadProblem]) -> list[Capability]:
        for cap in kept:
            problems.append(
                LoadProblem(
                    path, f"kept the last good version of '{cap.name}' until the file loads", severity="warning"
                )
            )
        return kept


def _by_path(capabilities: CapabilitySet | None) -> dict[Path, list[Capability]]:
    grouped: dict[Path, list[Capability]] = {}
    for cap in capabilities.by_name.values() if capabilities is not None else ():
        grouped.setdefault(cap.path, []).append(cap)
    return grouped


def parse_file(path: Path, raw: bytes, namespace: str) -> tuple[Capability | None, list[LoadProblem]]:
    """Parse and compile one file; the capability (or None) and the problems found."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [LoadProblem(path, f"not UTF-8 text (byte {exc.start})")]
    try:
        data, root = load_yaml(text)  # a safe loader (libyaml's when it is there)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        return None, [LoadProblem(path, f"malformed YAML: {exc.problem}", mark.line + 1 if mark else None)]
    except yaml.YAMLError as exc:
        return None, [LoadProblem(path, f"malformed YAML: {exc}")]
    if not isinstance(data, dict):
        return None, [LoadProblem(path, "a capability file holds a mapping (name:, description:, providers:, ...)", 1)]
    assert root is not None  # a mapping was loaded, so there is a tree
    lines = _Lines(root)
    digest = pin_digest(raw)
    pin = data.get("sha256")
    if pin is not None and str(pin).strip().lower() != digest:
        return None, [
            LoadProblem(
                path,
                f"sha256 pin mismatch: the file hashes to {digest} but is pinned to {str(pin)[:64]}. It changed since "
                "it was pinned (a changed description is how tool poisoning gets in): review the change, then "
                "re-pin with `aperture capabilities pin FILE`",
                lines.of(("sha256",)),
            )
        ]
    try:
        spec = CapabilityFile.model_validate(data)
    except pydantic.ValidationError as exc:
        return None, [_pydantic_problem(path, error, lines) for error in exc.errors()]
    try:
        capability = compile_capability(spec, namespace=namespace, path=path, digest=digest)
    except SpecError as exc:
        return None, [LoadProblem(path, f"{dotted(exc.loc)}: {exc.reason}", lines.of(exc.loc))]
    except InvalidToolIdError as exc:
        return None, [LoadProblem(path, f"name: {exc.details['reason']}", lines.of(("name",)))]
    problems = [LoadProblem(path, warning, lines.of(()), "warning") for warning in capability.warnings]
    return capability, problems


def _pydantic_problem(path: Path, error: Any, lines: _Lines) -> LoadProblem:
    loc: Loc = tuple(error["loc"])
    if loc and loc[0] == "schema_":
        loc = ("schema", *loc[1:])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = f"'{loc[-1]}' is required" + (
            " (every capability needs providers.primary with a REST config)" if loc == ("providers",) else ""
        )
    return LoadProblem(path, f"{dotted(loc)}: {message}", lines.of(loc))


class _Lines:
    """Line numbers of keys, from the YAML node tree the file was loaded from (no second parse)."""

    def __init__(self, root: yaml.Node) -> None:
        self._root = root

    def of(self, loc: Loc) -> int | None:
        return line_of(self._root, loc)
