"""The skills backend: recipe and instruction skills served as tools (`skills:<name>`), searchable like any tool,
reloaded when their files change, and an instruction skill's files served as resources.

The gateway registers it when the configuration has a `skills:` section and hands it a `SkillHost` (its own run
function, catalog and visibility check), so a recipe's steps run through every operations rule as the caller.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import mcp_types

from aperture.compose.skills.catalog import Skill, SkillSet, assemble, check
from aperture.compose.skills.instructions import InstructionSkill, read_file, split_uri
from aperture.compose.skills.loader import SkillLoader, Source
from aperture.compose.skills.recipe import KIND, Recipe, compile_recipe
from aperture.compose.skills.run import LIMITS_KEY, Limits, SkillHost, plan_recipe, run_recipe
from aperture.compose.skills.settings import SkillsSettings
from aperture.execution import CallContext, CatalogSnapshot, FileWatch, HealthStatus, LoadProblem, ToolOutput
from aperture.model import ArgumentValidator, InvalidRequestError, Tool, ToolId, UnknownToolError

logger = logging.getLogger(__name__)
_TEXT = {".md": "text/markdown", ".yaml": "application/yaml", ".yml": "application/yaml"}


@dataclass(frozen=True, slots=True)
class SkillReport:
    """What the last load found: the skills served and every problem, with file and line."""

    skills: int
    sources: int
    problems: tuple[LoadProblem, ...]

    @property
    def errors(self) -> list[LoadProblem]:
        return [p for p in self.problems if p.severity == "error"]

    def summary(self) -> str:
        errors = self.errors
        text = (
            f"{self.skills} skills from {self.sources} sources; {len(errors)} errors, "
            f"{len(self.problems) - len(errors)} warnings"
        )
        return text + (f" (first: {errors[0]})" if errors else "")


class SkillBackend:
    """Skills from the configured paths, as a backend of the gateway.

    Example:
        ```python
        backend = SkillBackend("skills", [Path("skills")], host=host)
        await backend.start(task_group)  # loads, then watches the paths
        ```
    """

    kind = KIND

    def __init__(
        self,
        name: str,
        paths: Sequence[Path | str],
        settings: SkillsSettings | None = None,
        *,
        host: SkillHost | None = None,
    ) -> None:
        ToolId(name, "x")  # validates the namespace, with a clear message
        self._name = name
        self.settings = settings or SkillsSettings(paths=[str(p) for p in paths], namespace=name)
        self.limits = Limits(
            max_steps=self.settings.max_steps,
            max_tool_calls=self.settings.max_tool_calls,
            max_foreach=self.settings.max_foreach,
            timeout=self.settings.timeout,
        )
        self.host = None if host is None else replace(host, recipe_of=self._recipe_of)
        self.loader = SkillLoader([Path(p) for p in paths], max_steps=self.settings.max_steps)
        self._sources: list[Source] = []
        self._path_problems: list[LoadProblem] = []
        self._last_good: dict[str, Skill] = {}
        self._set = SkillSet()
        self._report: SkillReport | None = None
        self._listener: Callable[[str], None] | None = None
        self._lock = anyio.Lock()
        self._watch = FileWatch(f"skills {name}", self.loader.existing_paths, self.reload)
        self.reloads = 0
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def skills(self) -> SkillSet:
        """The skills served now (read it once per operation for a consistent view)."""
        return self._set

    @property
    def report(self) -> SkillReport | None:
        return self._report

    # --- loading, checking and watching ---------------------------------------------------------------

    async def start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Load the paths, then watch them (when `watch` is on) in `task_group`."""
        await self.reload()
        if self.settings.watch:
            self._watch.start(task_group)

    async def reload(self) -> SkillReport:
        """Read the paths again (in a worker thread) and serve what loads; a source that stopped loading keeps
        its last good version."""
        async with self._lock:
            self._sources, self._path_problems = await anyio.to_thread.run_sync(self.loader.load)
            report = self._rebuild(self._catalog())
            self.reloads += 1
            self._watch.check_paths()  # a path may have appeared or vanished
        return report

    def catalog_changed(self, catalog: CatalogSnapshot) -> None:
        """Check the skills again against a changed catalog (a registry listener); a change in what is served
        is reported to the registry, whose next listing picks it up."""
        if self._report is not None and not self._closed:
            self._rebuild(catalog)

    def _catalog(self) -> CatalogSnapshot:
        return self.host.catalog() if self.host is not None else CatalogSnapshot()

    def _rebuild(self, catalog: CatalogSnapshot) -> SkillReport:
        candidates = self.loader.candidates(self._sources, self._last_good)
        built = assemble(candidates, catalog, self._name)
        keys = {source.key for source in self._sources}
        self._last_good = {k: v for k, v in self._last_good.items() if k in keys} | dict(built.served)
        old, self._set = self._set, built
        problems = (*self._path_problems, *(p for s in self._sources for p in s.problems), *built.problems)
        report = SkillReport(len(built), len(self._sources), tuple(dict.fromkeys(problems)))
        changed = self._report is None or report.problems != self._report.problems or old.tools != built.tools
        self._report = report
        if changed:
            logger.info("skills %s: %s", self._name, report.summary())
            for problem in report.problems:
                (logger.warning if problem.severity == "error" else logger.info)("skills: %s", problem)
        if old.tools != built.tools and self._listener is not None:
            self._listener(self._name)
        return report

    def set_change_listener(self, listener: Callable[[str], None] | None) -> None:
        self._listener = listener

    # --- the Backend protocol -------------------------------------------------------------------------

    async def list_tools(self) -> Sequence[Tool]:
        if self._report is None:
            await self.reload()
        return self._set.tools

    async def get_tool(self, name: str) -> Tool | None:
        skill = self._set.get(name)
        return skill.tool(self._name) if skill is not None else None

    async def call(self, name: str, args: dict[str, Any], ctx: CallContext) -> ToolOutput:
        """Run a recipe (its inputs are `args`, already checked against its schema), or give an instruction
        skill's instructions."""
        skill = self._set.get(name)  # this version serves the whole call, whatever reloads meanwhile
        if skill is None:
            raise UnknownToolError(f"{self._name}:{name}", [f"{self._name}:{n}" for n in list(self._set.by_name)[:3]])
        if isinstance(skill, InstructionSkill):
            structured = skill.to_dict()
            return ToolOutput(content=(mcp_types.TextContent(text=skill.body),), structured=structured)
        limits = ctx.meta.get(LIMITS_KEY) if ctx.meta else None
        return await run_recipe(
            skill,
            args,
            ctx,
            self._host(),
            limits if isinstance(limits, Limits) else self.limits,
            key=f"{self._name}:{name}",
        )

    async def health(self) -> HealthStatus:
        report = self._report
        return HealthStatus(healthy=True, message=report.summary() if report else "not loaded yet")

    async def aclose(self) -> None:
        self._closed = True
        self._listener = None
        self._watch.close()

    def _recipe_of(self, tool_id: str) -> Recipe | None:
        namespace, _, name = tool_id.partition(":")
        skill = self._set.get(name) if namespace == self._name else None
        return skill if isinstance(skill, Recipe) else None

    def _host(self) -> SkillHost:
        if self.host is None:
            raise InvalidRequestError("This skills backend has no gateway to run tools through.", op="run_skill")
        return self.host

    # --- skills for the meta-tools --------------------------------------------------------------------

    def lookup(self, skill_id: str) -> Skill | None:
        """The served skill of `skill_id` (`skills:<name>` or `<name>`)."""
        name = skill_id.split(":", 1)[1] if skill_id.startswith(f"{self._name}:") else skill_id
        return self._set.get(name)

    def tool_id(self, skill: Skill) -> str:
        return f"{self._name}:{skill.name}"

    def why_missing(self, skill_id: str) -> list[LoadProblem]:
        """The errors of the sources that declare the skill `skill_id`, when it is not served."""
        name = skill_id.split(":", 1)[1] if skill_id.startswith(f"{self._name}:") else skill_id
        report = self._report
        if report is None or self._set.get(name) is not None:
            return []
        paths = {s.path for s in self._sources if s.declared == name} | {
            s.path / "SKILL.md" for s in self._sources if s.declared == name and s.kind == "instructions"
        }
        return [p for p in report.problems if p.severity == "error" and p.path in paths]

    def compile_inline(self, definition: Mapping[str, Any]) -> Recipe:
        """A recipe from an inline definition (`run_skill`'s and `plan_skill`'s `skill`), checked as a file is.

        Raises:
            InvalidRequestError: listing every problem (shape, templates, tools, arguments, limits).
        """
        recipe, problems = compile_recipe(definition)
        if recipe is not None:
            problems += [
                p for p in check(recipe, self._catalog(), self._name, self._set.by_name) if p.severity == "error"
            ]
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            lines = "\n".join(f"- {p.reason}" for p in errors[:20])
            raise InvalidRequestError(
                f"The inline skill has {len(errors)} problem{'s' if len(errors) != 1 else ''}:\n{lines}",
                details={"problems": [p.reason for p in errors[:20]]},
            )
        assert recipe is not None
        return recipe

    def validate_inputs(self, recipe: Recipe, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """`inputs` checked and coerced against the recipe's schema (as run_tool checks a tool's arguments)."""
        return ArgumentValidator(recipe.inputs, tool_id=f"{self._name}:{recipe.name}").validate(inputs)

    async def run_inline(
        self, recipe: Recipe, inputs: Mapping[str, Any], ctx: CallContext, limits: Limits
    ) -> ToolOutput:
        return await run_recipe(recipe, inputs, ctx, self._host(), limits, key=f"inline:{recipe.name}")

    def plan(self, recipe: Recipe, inputs: Mapping[str, Any], ctx: CallContext, limits: Limits) -> dict[str, Any]:
        return plan_recipe(recipe, inputs, ctx, self._host(), limits)

    # --- resources (an instruction skill's files) -----------------------------------------------------

    async def list_resources(self) -> list[mcp_types.Resource]:
        resources = []
        for skill in self._set.by_name.values():
            if isinstance(skill, InstructionSkill):
                for relative in skill.files:
                    resources.append(
                        mcp_types.Resource(
                            uri=skill.uri(relative),
                            name=f"{skill.name}/{relative}",
                            description=f"A file of the skill {self._name}:{skill.name}.",
                            mime_type=mimetypes.guess_type(relative)[0] or _TEXT.get(Path(relative).suffix),
                        )
                    )
        return resources

    async def list_resource_templates(self) -> list[mcp_types.ResourceTemplate]:
        return []

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        """One file of an instruction skill.

        Raises:
            InvalidRequestError: no such skill or file, or a path that leads outside the skill's folder.
        """
        parts = split_uri(uri)
        skill = self._set.get(parts[0]) if parts is not None else None
        if parts is None or not isinstance(skill, InstructionSkill):
            raise InvalidRequestError(f"No skill resource {uri!r}; resources/list shows them.", op="resources/read")
        data, mime = await anyio.to_thread.run_sync(read_file, skill, parts[1], self.settings.max_resource_bytes)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            blob = base64.b64encode(data).decode("ascii")
            return mcp_types.ReadResourceResult(
                contents=[mcp_types.BlobResourceContents(uri=uri, mime_type=mime, blob=blob)]
            )
        return mcp_types.ReadResourceResult(
            contents=[mcp_types.TextResourceContents(uri=uri, mime_type=mime, text=text)]
        )

    async def subscribe_resource(self, uri: str, subscribe: bool = True) -> None:
        """Subscriptions are accepted (files change only with a reload, which lists them anew)."""

    def resource_tool(self, uri: str) -> str | None:
        """The skill a resource belongs to: a caller that may not see the skill may not read its files."""
        parts = split_uri(uri)
        return f"{self._name}:{parts[0]}" if parts is not None else None
