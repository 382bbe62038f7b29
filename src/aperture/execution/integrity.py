"""Tool integrity: fingerprint every upstream tool definition, and hold back tools that change.

A changed description is how tool poisoning and "rug pulls" get in: a server that was trusted when it
was added later rewrites a tool's description to steer the model. The first definition seen is
recorded (trust on first use); a later, different definition is held back from search and run until
an operator approves it (`aperture tools approve`), or only logged, or accepted, as the policy says.
A tool a backend adds after its first listing can be held the same way (`new_tools`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aperture.execution.definition_diff import FieldDiff, definition_diff, whole_definition
from aperture.model import Tool, ToolAnnotations, ToolId

logger = logging.getLogger(__name__)


class Policy(StrEnum):
    """What happens to a tool whose definition differs from the approved one."""

    HOLD = "hold"  # kept out of search and run until approved
    WARN = "warn"  # served, with a warning in the log
    ACCEPT = "accept"  # served, and the new definition becomes the approved one


class NewTools(StrEnum):
    """What happens to a tool a backend adds after its first listing (the first listing is always trusted)."""

    ACCEPT = "accept"  # served, and approved as first seen
    HOLD = "hold"  # kept out of search, describe and run until approved


def definition(tool: Tool) -> dict[str, Any]:
    """The parts of a tool that a model reads or that shape its calls."""
    out = {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": tool.annotations.to_dict(),
    }
    if tool.instructions:  # only when there are some, so fingerprints approved before stay as they were
        out["instructions"] = tool.instructions
    if tool.namespace_description:  # search indexes it: a changed description is held like a changed tool
        out["namespace_description"] = tool.namespace_description
    return out


_ADDED_LATER = ("namespace_description",)
"""Fields of a definition that approvals recorded before 2026-12-05 do not have: such an approval still holds
for a tool that differs from it only by having them (trust on first use, as for a tool first listed)."""


def _only_fields_added_since(approved: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Does `current` differ from `approved` only by fields of `_ADDED_LATER` that `approved` lacks?"""
    added = [field for field in _ADDED_LATER if field in current and field not in approved]
    return bool(added) and {k: v for k, v in current.items() if k not in added} == dict(approved)


def fingerprint(tool: Tool) -> str:
    """sha256 of the canonical JSON of the tool's definition."""
    canonical = json.dumps(definition(tool), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def diff(approved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """A unified diff between two definitions, as pretty JSON."""
    before = json.dumps(approved, indent=2, sort_keys=True, default=str).splitlines()
    after = json.dumps(current, indent=2, sort_keys=True, default=str).splitlines()
    return "\n".join(difflib.unified_diff(before, after, "approved", "current", lineterm=""))


@dataclass(frozen=True, slots=True)
class HeldTool:
    """A tool kept back because its definition changed since it was approved, or (`new`) because its
    backend added it after its first listing and nothing about it was ever approved."""

    tool: Tool
    approved: Mapping[str, Any]
    new: bool = False

    @property
    def diff(self) -> str:
        return diff(self.approved, definition(self.tool))

    @property
    def changes(self) -> list[FieldDiff]:
        """The difference, field by field and word by word (for a new tool, its whole definition, unmarked)."""
        current = definition(self.tool)
        return whole_definition(current) if self.new else definition_diff(self.approved, current)

    @property
    def changed_fields(self) -> list[str]:
        """The fields that differ from the approved definition (none for a new tool: there is none)."""
        if self.new:
            return []
        current = definition(self.tool)
        return sorted(k for k in current if current[k] != self.approved.get(k))


class FingerprintStore:
    """Approved definitions by tool id, persisted as JSON (a failed write is logged; memory stays right)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._records: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            try:
                self._records = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                logger.warning("cannot read tool fingerprints from %s (%s); starting afresh", path, exc)

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self._records.get(key)

    def namespaces(self) -> set[str]:
        """Namespaces with at least one approved tool: their backends have been listed before."""
        return {key.partition(":")[0] for key in self._records}

    def known_tools(self, namespace: str, backend_kind: str) -> list[Tool]:
        """The approved definitions of a namespace's tools, as tools (what a lazy backend lists before it starts)."""
        tools = []
        for key, record in self._records.items():
            if not key.startswith(f"{namespace}:"):
                continue
            spec = record.get("definition", {})
            tools.append(
                Tool(
                    id=ToolId(namespace, key.partition(":")[2]),
                    title=spec.get("title"),
                    description=spec.get("description") or "",
                    input_schema=spec.get("input_schema") or {"type": "object", "properties": {}},
                    output_schema=spec.get("output_schema"),
                    annotations=ToolAnnotations.from_dict(spec.get("annotations") or {}),
                    backend_kind=backend_kind,
                    namespace_description=spec.get("namespace_description") or "",
                )
            )
        return tools

    def approve(self, tool: Tool) -> None:
        self._records[tool.key] = {
            "fingerprint": fingerprint(tool),
            "definition": definition(tool),
            "approved_at": datetime.now(UTC).isoformat(),
        }

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self._records, indent=2, sort_keys=True, default=str))
            temporary.replace(self.path)
        except OSError as exc:
            logger.warning("cannot save tool fingerprints to %s: %s", self.path, exc)


class IntegrityGuard:
    """Checks tool definitions against the approved fingerprints, for backends of the watched kinds."""

    def __init__(
        self,
        store: FingerprintStore,
        policy: Policy = Policy.HOLD,
        kinds: Iterable[str] = ("mcp",),
        new_tools: NewTools = NewTools.ACCEPT,
    ) -> None:
        self.store = store
        self.policy = policy
        self.kinds = frozenset(kinds)
        self.new_tools = new_tools
        self._warned: set[str] = set()  # new tools told about
        self._warned_changed: set[tuple[str, str]] = set()  # (id, fingerprint): a further change is told again

    def check(self, tools: Iterable[Tool]) -> tuple[list[Tool], dict[str, HeldTool]]:
        """Split tools into those served and those held.

        The tools of a backend listed for the first time (no tool of its namespace approved yet) are recorded
        (trust on first use); a tool it adds later is recorded too, or held as new with `new_tools: hold`.
        """
        served: list[Tool] = []
        held: dict[str, HeldTool] = {}
        dirty = False
        listed_before = self.store.namespaces()  # before this listing records anything
        for tool in tools:
            if tool.backend_kind not in self.kinds:
                served.append(tool)
                continue
            record = self.store.get(tool.key)
            if record is None and self.new_tools is NewTools.HOLD and tool.namespace in listed_before:
                held[tool.key] = HeldTool(tool, {}, new=True)
                if tool.key not in self._warned:
                    self._warned.add(tool.key)
                    logger.warning(
                        "tool %s is new since its backend's first listing and is held until approved", tool.key
                    )
                continue
            printed = fingerprint(tool)
            if record is None or record.get("fingerprint") == printed:
                if record is None:
                    self.store.approve(tool)
                    dirty = True
                served.append(tool)
                continue
            if _only_fields_added_since(record.get("definition", {}), definition(tool)):
                # Approved by a gateway that did not record these fields yet: nothing approved changed.
                logger.info("tool %s: recording %s, which its approval predates", tool.key, ", ".join(_ADDED_LATER))
                self.store.approve(tool)
                dirty = True
                served.append(tool)
                continue
            change = HeldTool(tool, record.get("definition", {}))
            if self.policy is Policy.HOLD:
                held[tool.key] = change
                # Every catalog change checks every tool again (one per backend as a gateway starts): say it once.
                if (tool.key, printed) not in self._warned_changed:
                    self._warned_changed.add((tool.key, printed))
                    logger.warning(
                        "tool %s changed (%s) and is held until approved", tool.key, ", ".join(change.changed_fields)
                    )
                continue
            if self.policy is Policy.ACCEPT:
                self.store.approve(tool)
                dirty = True
            elif (tool.key, printed) not in self._warned_changed:
                self._warned_changed.add((tool.key, printed))
                logger.warning("tool %s changed since it was approved: %s", tool.key, ", ".join(change.changed_fields))
            served.append(tool)
        if dirty:
            self.store.save()
        return served, held

    def approve(self, tools: Iterable[Tool]) -> list[str]:
        """Approve the current definitions of `tools`; returns their ids."""
        approved = []
        for tool in tools:
            self.store.approve(tool)
            approved.append(tool.key)
        self.store.save()
        return approved
