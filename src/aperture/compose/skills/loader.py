"""Finding and parsing skills in the configured paths: recipe files and instruction-skill folders.

Each file or folder is parsed on its own, so one that is broken (not YAML, a bad template, no front matter) is
reported with its path and line and the others load. A file whose bytes did not change since the last load is
not parsed again: its skill stays the same object, which is how the served set knows nothing changed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aperture.compose.skills.catalog import Candidate, Skill
from aperture.compose.skills.instructions import SKILL_FILE, parse_instruction_skill
from aperture.compose.skills.recipe import parse_recipe
from aperture.execution import LoadProblem

logger = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Source:
    """One recipe file or instruction-skill folder, as last read."""

    key: str
    path: Path
    kind: str
    """`recipe` or `instructions`."""
    digest: bytes | str
    skill: Skill | None
    problems: tuple[LoadProblem, ...]
    declared: str | None = None
    """The name the source declares, when it can be read (for saying why a skill by that name is missing)."""


class SkillLoader:
    """Reads the configured paths into `Source`s, reusing the parse of any that did not change."""

    def __init__(self, paths: Sequence[Path], *, max_steps: int = 1000) -> None:
        self.paths = [Path(p) for p in paths]
        self.max_steps = max_steps
        self._sources: dict[str, Source] = {}

    def existing_paths(self) -> list[Path]:
        return [p for p in self.paths if p.is_dir()]

    def load(self) -> tuple[list[Source], list[LoadProblem]]:
        """Read every path now: the sources in path order, and problems with the paths themselves."""
        problems: list[LoadProblem] = []
        found: list[tuple[str, Path]] = []
        for root in self.paths:
            if not root.is_dir():
                problems.append(
                    LoadProblem(
                        root, "the skills directory does not exist: create it or fix skills.paths in the configuration"
                    )
                )
                continue
            found += _scan(root)
        sources: dict[str, Source] = {}
        for kind, path in found:
            key = str(path)
            if key in sources:
                continue  # a path given twice (or nested in another)
            sources[key] = self._read(kind, path)
        self._sources = sources
        return list(sources.values()), problems

    def candidates(self, sources: Sequence[Source], last_good: dict[str, Skill]) -> list[Candidate]:
        return [Candidate(s.key, s.skill, last_good.get(s.key)) for s in sources]

    def _read(self, kind: str, path: Path) -> Source:
        before = self._sources.get(str(path))
        if kind == "instructions":
            skill, problems = parse_instruction_skill(path)
            digest = skill.digest if skill is not None else repr(problems)
            if before is not None and before.digest == digest:
                return before
            return Source(str(path), path, kind, digest, skill, tuple(problems), skill.name if skill else path.name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return Source(
                str(path), path, kind, b"", None, (LoadProblem(path, f"cannot read the file: {exc.strerror}"),)
            )
        if before is not None and before.digest == raw:
            return before
        recipe, problems = parse_recipe(path, raw)
        if recipe is not None and len(recipe.steps) > self.max_steps:
            problems.append(
                LoadProblem(
                    path,
                    f"the recipe has {len(recipe.steps)} steps; skills.max_steps allows {self.max_steps}. Split it "
                    "into skills that call each other, or raise the limit",
                    recipe.lines(("steps",)),
                )
            )
            recipe = None
        return Source(str(path), path, kind, raw, recipe, tuple(problems), _declared_name(raw, path))


def _scan(root: Path) -> list[tuple[str, Path]]:
    """`(kind, path)` of each skill under `root`, sorted: a folder holding SKILL.md is one instruction skill (its
    files are its own, even YAML ones); any other *.yaml / *.yml file is a recipe. Hidden entries are left out,
    symlinked folders are not entered."""
    if (root / SKILL_FILE).is_file():
        return [("instructions", root)]
    found: list[tuple[str, Path]] = []
    for directory, folders, names in os.walk(root):
        here = Path(directory)
        if here != root and SKILL_FILE in names:
            found.append(("instructions", here))
            folders[:] = []
            continue
        folders[:] = sorted(f for f in folders if not f.startswith(".") and not (here / f).is_symlink())
        for name in sorted(names):
            if not name.startswith(".") and name.endswith(SUFFIXES) and (here / name).is_file():
                found.append(("recipe", here / name))
    found.sort(key=lambda item: item[1].parts)
    return found


def _declared_name(raw: bytes, path: Path) -> str:
    """The `name:` a recipe file declares, if it can be read at all; else the file's stem."""
    try:
        data: Any = yaml.safe_load(raw)
    except (yaml.YAMLError, UnicodeDecodeError):
        return path.stem
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else path.stem
