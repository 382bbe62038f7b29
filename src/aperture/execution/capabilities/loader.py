"""Load capability files from directories: every `*.yaml` / `*.yml`, each problem reported with path, line and
reason, broken files skipped (or, on reload, kept at their last good version)."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import pydantic
import yaml

from aperture.execution.capabilities.spec import (
    Capability,
    CapabilityFile,
    Loc,
    SpecError,
    compile_capability,
    dotted,
)
from aperture.model import InvalidToolIdError, Tool

logger = logging.getLogger(__name__)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PIN_LINE = re.compile(rb"^sha256[ \t]*:[^\n]*(?:\n|$)", re.MULTILINE)
SUFFIXES = (".yaml", ".yml")


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
    found = [
        path
        for path in directory.rglob("*")
        if path.suffix in SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        and path.is_file()
    ]
    return sorted(found)


class CapabilityLoader:
    """Reads directories into `CapabilitySet`s, re-parsing only the files whose bytes changed since last time."""

    def __init__(self, namespace: str, directories: Sequence[Path]) -> None:
        self.namespace = namespace
        self.directories = [Path(d) for d in directories]
        self._parsed: dict[Path, tuple[bytes, Capability | None, tuple[LoadProblem, ...]]] = {}

    def existing_directories(self) -> list[Path]:
        return [d for d in self.directories if d.is_dir()]

    def load(self, previous: CapabilitySet | None = None) -> LoadReport:
        """Read every file now. A file that no longer loads keeps its capabilities from `previous`."""
        started = time.perf_counter()
        problems: list[LoadProblem] = []
        files: list[Path] = []
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
            files += capability_files(directory)
        found: dict[str, Capability] = {}
        parsed: dict[Path, tuple[bytes, Capability | None, tuple[LoadProblem, ...]]] = {}
        for path in files:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                problems.append(LoadProblem(path, f"cannot read the file: {exc.strerror or exc}"))
                continue
            cached = self._parsed.get(path)
            if cached is not None and cached[0] == raw:
                entry = cached
            else:
                capability, file_problems = parse_file(path, raw, self.namespace)
                entry = (raw, capability, tuple(file_problems))
            parsed[path] = entry
            _, capability, known = entry
            problems += known
            kept = [capability] if capability is not None else self._keep(previous, path, problems)
            for cap in kept:
                other = found.get(cap.name)
                if other is not None:
                    problems.append(
                        LoadProblem(
                            path,
                            f"the name '{cap.name}' is also defined in {other.path}; this file replaces it (later "
                            "files win). Rename one of them to keep both",
                            severity="warning",
                        )
                    )
                    del found[cap.name]  # the replacement goes to the end, as the later definition
                found[cap.name] = cap
        self._parsed = parsed
        for problem in problems:
            log = logger.warning if problem.severity == "error" else logger.info
            log("capabilities %s: %s", self.namespace, problem)
        return LoadReport(CapabilitySet.of(found.values()), tuple(problems), len(files), time.perf_counter() - started)

    @staticmethod
    def _keep(previous: CapabilitySet | None, path: Path, problems: list[LoadProblem]) -> list[Capability]:
        kept = previous.from_file(path) if previous is not None else []
        for cap in kept:
            problems.append(
                LoadProblem(
                    path, f"kept the last good version of '{cap.name}' until the file loads", severity="warning"
                )
            )
        return kept


def parse_file(path: Path, raw: bytes, namespace: str) -> tuple[Capability | None, list[LoadProblem]]:
    """Parse and compile one file; the capability (or None) and the problems found."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [LoadProblem(path, f"not UTF-8 text (byte {exc.start})")]
    try:
        data = yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader when libyaml is there)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        return None, [LoadProblem(path, f"malformed YAML: {exc.problem}", mark.line + 1 if mark else None)]
    except yaml.YAMLError as exc:
        return None, [LoadProblem(path, f"malformed YAML: {exc}")]
    if not isinstance(data, dict):
        return None, [LoadProblem(path, "a capability file holds a mapping (name:, description:, providers:, ...)", 1)]
    lines = _Lines(text)
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
    """Line numbers of keys, from the YAML node tree (composed only when a problem needs a line)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: Any = None

    def of(self, loc: Loc) -> int | None:
        if self._root is None:
            try:
                self._root = yaml.compose(self._text, Loader=_Loader)
            except yaml.YAMLError:
                return None
        node = self._root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
                if match is None:
                    break
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line
