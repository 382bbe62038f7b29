"""The served set of skills: each file's skill checked against the catalog and against the other skills.

Checked here, and again whenever the catalog changes (tools appear late on lazy or slow backends, and go):

- each step's tool exists. One whose backend is down, or that is held for review, is a warning (the skill is
  served, and the step fails clearly if the tool is still missing when it runs); one that a listed backend does
  not have, or of a namespace no backend has, is an error.
- each step's arguments can match the tool's input schema: no argument the schema lacks, every required one
  given, every literal value of the right type (templated values are checked when the step runs).
- no skill calls itself, directly or through other skills.

A skill with an error is not served. When its file changed and the new version has the error, the last version
that was served stays (the problem is reported), as for a file that does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from aperture.compose.skills.instructions import InstructionSkill
from aperture.compose.skills.recipe import EMPTY_INPUTS, Recipe, Step
from aperture.execution import CatalogSnapshot, LoadProblem, closest_ids
from aperture.model import ArgumentValidator, InputValidationError, Tool, ToolId

Skill = Recipe | InstructionSkill


@dataclass(frozen=True, slots=True)
class Candidate:
    """One source's skill: the version it has now (None when it does not load) and the last one served."""

    key: str
    current: Skill | None
    last_good: Skill | None = None


@dataclass(frozen=True, slots=True)
class SkillSet:
    """The skills served, by name, with their tools; immutable (a change builds a new set)."""

    by_name: Mapping[str, Skill] = field(default_factory=dict)
    tools: tuple[Tool, ...] = ()
    served: Mapping[str, Skill] = field(default_factory=dict)
    """Candidate key -> the version served from it."""
    problems: tuple[LoadProblem, ...] = ()

    def get(self, name: str) -> Skill | None:
        return self.by_name.get(name)

    def __len__(self) -> int:
        return len(self.by_name)


def assemble(candidates: Sequence[Candidate], catalog: CatalogSnapshot, namespace: str) -> SkillSet:
    """Choose the version of each candidate to serve, checking each against `catalog` and the others."""
    choice: dict[str, Skill | None] = {c.key: c.current or c.last_good for c in candidates}
    by_key = {c.key: c for c in candidates}
    rejected: dict[str, list[LoadProblem]] = {}
    for _ in range(len(candidates) + 1):  # each round rejects at least one version, or ends
        by_name, _clashes = _named(choice)
        errors: dict[str, list[LoadProblem]] = {}
        for key, skill in choice.items():
            if skill is not None:
                found = [p for p in check(skill, catalog, namespace, by_name) if p.severity == "error"]
                if found:
                    errors[key] = found
        for key, problem in _loops(choice, by_name, namespace).items():
            errors.setdefault(key, []).append(problem)
        if not errors:
            break
        for key, found in errors.items():
            candidate, chosen = by_key[key], choice[key]
            rejected.setdefault(key, []).extend(p for p in found if p not in rejected.get(key, []))
            fallback = candidate.last_good
            keep = chosen is candidate.current and fallback is not None and fallback is not chosen
            choice[key] = fallback if keep else None
    by_name, clashes = _named(choice)
    problems: list[LoadProblem] = list(clashes)
    for candidate in candidates:
        chosen = choice[candidate.key]
        problems += rejected.get(candidate.key, [])
        if chosen is not None and chosen is not candidate.current:
            where = chosen.path or Path(candidate.key)
            problems.append(
                LoadProblem(
                    where, f"kept the last good version of skill '{chosen.name}' until this loads", None, "warning"
                )
            )
        if chosen is not None:
            problems += [p for p in check(chosen, catalog, namespace, by_name) if p.severity == "warning"]
    served = {key: skill for key, skill in choice.items() if skill is not None and by_name.get(skill.name) is skill}
    return SkillSet(
        MappingProxyType(by_name),
        tuple(skill.tool(namespace) for skill in by_name.values()),
        MappingProxyType(served),
        tuple(problems),
    )


def _named(choice: Mapping[str, Skill | None]) -> tuple[dict[str, Skill], list[LoadProblem]]:
    """The chosen skills by name; of two with one name the later source wins (with a warning)."""
    by_name: dict[str, Skill] = {}
    clashes: list[LoadProblem] = []
    for key, skill in choice.items():
        if skill is None:
            continue
        other = by_name.pop(skill.name, None)
        if other is not None:
            clashes.append(
                LoadProblem(
                    skill.path or Path(key),
                    f"the name '{skill.name}' is also used by {other.path}; this one replaces it (later sources "
                    "win). Rename one of them to keep both",
                    None,
                    "warning",
                )
            )
        by_name[skill.name] = skill
    return by_name, clashes


def _loops(choice: Mapping[str, Skill | None], by_name: Mapping[str, Skill], namespace: str) -> dict[str, LoadProblem]:
    """An error for each chosen skill that calls itself, directly or through others."""
    calls = {name: [c for c in skill.called_skills(namespace) if c in by_name] for name, skill in by_name.items()}
    found: dict[str, LoadProblem] = {}
    for key, skill in choice.items():
        if skill is None or by_name.get(skill.name) is not skill:
            continue
        cycle = _cycle_from(skill.name, calls)
        if cycle is not None:
            route = " → ".join(f"{namespace}:{name}" for name in cycle)
            line = skill.lines(("steps",)) if isinstance(skill, Recipe) else None
            found[key] = LoadProblem(
                skill.path or Path(key),
                f"skill '{skill.name}' calls itself ({route}); a skill may call other skills, but never in a loop",
                line,
            )
    return found


def _cycle_from(start: str, calls: Mapping[str, list[str]]) -> list[str] | None:
    """A path of calls from `start` back to `start`, if there is one (depth first)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, route = stack.pop()
        for callee in calls.get(name, []):
            if callee == start:
                return [*route, start]
            if callee not in seen:
                seen.add(callee)
                stack.append((callee, [*route, callee]))
    return None


def check(skill: Skill, catalog: CatalogSnapshot, namespace: str, skills: Mapping[str, Skill]) -> list[LoadProblem]:
    """What is wrong with `skill` against the catalog and the other skills: errors and warnings."""
    if not isinstance(skill, Recipe):
        return []
    problems: list[LoadProblem] = []
    where = skill.path or Path("<inline skill>")
    for step in skill.steps:
        loc = ("steps", step.index, "tool_id")
        schema, reason, severity = _target(step.tool_id, catalog, namespace, skills)
        if reason is not None:
            problems.append(LoadProblem(where, f"steps[{step.index}].tool_id: {reason}", skill.lines(loc), severity))
        if schema is not None:
            for key, text in argument_problems(step, schema):
                line = skill.lines(("steps", step.index, "args", key) if key else ("steps", step.index, "args"))
                problems.append(LoadProblem(where, f"steps[{step.index}].args: {text}", line))
    return problems


def _target(
    tool_id: str, catalog: CatalogSnapshot, namespace: str, skills: Mapping[str, Skill]
) -> tuple[Mapping[str, object] | None, str | None, Literal["error", "warning"]]:
    """The input schema of a step's tool (None when unknown), and a problem with its severity."""
    parsed = ToolId.parse(tool_id)
    if parsed.namespace == namespace:
        target = skills.get(parsed.name)
        if target is None:
            close = closest_ids(parsed.key, {f"{namespace}:{n}": skill.tool(namespace) for n, skill in skills.items()})
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            return None, f"no skill '{parsed.name}' (is its file loading?).{hint}", "error"
        return (target.inputs if isinstance(target, Recipe) else EMPTY_INPUTS), None, "error"
    tool = catalog.tools.get(parsed.key)
    if tool is not None:
        return tool.input_schema, None, "error"
    if parsed.key in catalog.held:
        return (
            None,
            f"tool '{parsed.key}' is held for review (aperture tools approve); the step fails until then",
            "warning",
        )
    if parsed.namespace in catalog.failures:
        return (
            None,
            f"backend '{parsed.namespace}' is down, so '{parsed.key}' cannot be checked now; checked again when "
            "it lists its tools",
            "warning",
        )
    close = closest_ids(parsed.key, catalog.tools)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    if parsed.namespace not in catalog.by_backend:
        return None, f"no tool '{parsed.key}': no backend is named '{parsed.namespace}'.{hint}", "error"
    return None, f"no tool '{parsed.key}'.{hint}", "error"


def argument_problems(step: Step, schema: Mapping[str, object]) -> list[tuple[str, str]]:
    """`(argument, problem)` for arguments of `step` that cannot match `schema`, found before anything runs."""
    source = step.args.source if isinstance(step.args.source, Mapping) else {}
    templated = {_root(where) for where, _ in step.args.expressions}
    properties = schema.get("properties")
    names = set(properties) if isinstance(properties, Mapping) else set()
    extra = schema.get("additionalProperties", False) is not False or "patternProperties" in schema
    problems: list[tuple[str, str]] = []
    if not extra:
        known = ", ".join(sorted(names)) or "none (pass no arguments)"
        problems += [
            (k, f"'{k}' is not a parameter of {step.tool_id} (parameters: {known})") for k in source if k not in names
        ]
    literal = {k: v for k, v in source.items() if k not in templated}
    try:
        ArgumentValidator(schema, tool_id=step.tool_id).validate(literal)
    except InputValidationError as error:
        for violation in error.details.get("violations", []):
            key = _root(str(violation.get("path", "")))
            if key in templated or (not extra and key in source and key not in names):
                continue  # checked when it runs, or already reported
            problems.append((key if key in source else "", str(violation.get("message", ""))))
    return problems


def _root(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0] if path else ""
