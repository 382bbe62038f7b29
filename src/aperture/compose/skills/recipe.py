"""Recipe skills: a YAML file naming inputs, ordered tool calls with templated arguments, and an output.

What one file can be checked for on its own is checked here, once, when it loads: its shape, its templates
(each parses, and reads only declared inputs and earlier steps), its ids. What needs the catalog (do the tools
exist, do the arguments fit them, do skills call each other in a loop) is checked in `catalog`, again whenever
the catalog changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import pydantic
import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from aperture.compose.templates import Expression, ExpressionError, Template, check_reads
from aperture.compose.templates import Path as ReadPath
from aperture.execution import LoadProblem
from aperture.execution.yaml_lines import line_of
from aperture.model import InvalidToolIdError, Tool, ToolId

KIND = "skills"
"""The backend kind of skill tools."""
STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
EMPTY_INPUTS: Mapping[str, Any] = {"type": "object", "properties": {}}
Loc = tuple[str | int, ...]


class StepSpec(BaseModel):
    """One step as written: the tool to call and how to call it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(description="The step's name; later steps read its result as steps.<id>.")
    tool_id: str = Field(description="The tool to call, 'namespace:name' (a skill is 'skills:<name>').")
    args: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("args", "inputs"),
        description="The tool's arguments; strings may hold {{ expression }} slots ('inputs' is the reference "
        "server's word for it, accepted too).",
    )
    when: str | bool | None = Field(None, description="Run the step only when this expression is true.")
    foreach: str | None = Field(None, description="Call the tool once per item of the list this expression gives.")
    concurrency: int = Field(
        1,
        ge=1,
        le=32,
        description="How many of a foreach's calls run at once (default 1: one after another, in order, for tools "
        "whose calls must not overlap); the results keep the items' order either way.",
    )

    @model_validator(mode="after")
    def _concurrency_needs_foreach(self) -> StepSpec:
        if self.concurrency > 1 and self.foreach is None:
            raise ValueError(f"step '{self.id}': concurrency applies to a foreach step; add foreach, or remove it")
        return self


class RecipeSpec(BaseModel):
    """A recipe file (or an inline skill definition) as written."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The skill's name; its tool id is skills:<name>.")
    description: str = Field("", description="What the skill does, for search and for the model.")
    inputs: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_INPUTS), description="JSON Schema of inputs.")
    steps: list[StepSpec] = Field(min_length=1, description="The tool calls, in order.")
    output: Any = Field(None, description="The result, templated; without it, the last step's result.")
    tags: list[str] = Field(default_factory=list, description="Tags, for search.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One compiled step."""

    id: str
    index: int
    tool_id: str
    args: Template
    when: Expression | None = None
    foreach: Expression | None = None
    concurrency: int = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tool_id": self.tool_id, "args": self.args.source}
        if self.when is not None:
            out["when"] = f"{{{{ {self.when.source} }}}}"
        if self.foreach is not None:
            out["foreach"] = f"{{{{ {self.foreach.source} }}}}"
        if self.concurrency > 1:
            out["concurrency"] = self.concurrency
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A compiled recipe: checked on its own, ready to be checked against the catalog and run."""

    name: str
    description: str
    inputs: Mapping[str, Any]
    steps: tuple[Step, ...]
    output: Template | None = None
    tags: tuple[str, ...] = ()
    path: Path | None = None
    digest: str = ""
    lines: Callable[[Loc], int | None] = field(default=lambda loc: None, compare=False, repr=False)
    kind: Literal["recipe"] = "recipe"

    def tool(self, namespace: str) -> Tool:
        """The recipe as a tool: its inputs are the tool's arguments."""
        return Tool(
            id=ToolId(namespace, self.name),
            description=self.description,
            input_schema=dict(self.inputs),
            tags=self.tags,
            backend_kind=KIND,
        )

    def called_skills(self, namespace: str) -> list[str]:
        """Names of the skills its steps call."""
        return [step.tool_id.split(":")[1] for step in self.steps if step.tool_id.split(":")[0] == namespace]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "inputs": dict(self.inputs),
            "steps": [step.to_dict() for step in self.steps],
        }
        if self.output is not None:
            out["output"] = self.output.source
        if self.tags:
            out["tags"] = list(self.tags)
        return out


def parse_recipe(path: Path, raw: bytes) -> tuple[Recipe | None, list[LoadProblem]]:
    """Parse and compile one recipe file; the recipe (None when it has errors) and the problems found."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [LoadProblem(path, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")]
    try:
        data, lines = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"not valid YAML: {exc.problem or exc.context or exc}"
        return None, [LoadProblem(path, reason, mark.line + 1 if mark else None)]
    except yaml.YAMLError as exc:
        return None, [LoadProblem(path, f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return None, [LoadProblem(path, "a recipe file holds a mapping (name:, description:, inputs:, steps:)", 1)]
    recipe, problems = compile_recipe(data, path=path, lines=lines, digest=hashlib.sha256(raw).hexdigest())
    return recipe, problems


def compile_recipe(
    data: Mapping[str, Any],
    *,
    path: Path | None = None,
    lines: Callable[[Loc], int | None] | None = None,
    digest: str = "",
) -> tuple[Recipe | None, list[LoadProblem]]:
    """Check and compile a recipe from its data (a file's, or an inline definition's).

    Returns the recipe, or None with at least one error; warnings come with a recipe.
    """
    line_of = lines or (lambda loc: None)
    where = path or Path("<inline skill>")

    def problem(loc: Loc, reason: str, inside: str = "") -> LoadProblem:
        """A problem at `loc` (whose line is looked up), `inside` the value there (`text`, `items[0]`)."""
        label = _dotted(loc) + (("" if inside.startswith("[") else ".") + inside if inside else "")
        return LoadProblem(where, f"{label}: {reason}" if label else reason, line_of((*loc, *_first_key(inside))))

    try:
        spec = RecipeSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        return None, [problem(_loc(error["loc"]), _message(error)) for error in exc.errors()]
    problems: list[LoadProblem] = []
    try:
        ToolId("x", spec.name)
    except InvalidToolIdError as exc:
        problems.append(problem(("name",), exc.details["reason"] + " (the name becomes the tool's id)"))
    inputs = _inputs_schema(spec.inputs)
    if isinstance(inputs, str):
        problems.append(problem(("inputs",), inputs))
        inputs = dict(EMPTY_INPUTS)
    declared = set(inputs.get("properties") or {})
    steps: list[Step] = []
    seen: dict[str, int] = {}
    ids = [s.id for s in spec.steps]
    for index, step_spec in enumerate(spec.steps):
        loc: Loc = ("steps", index)
        if not STEP_ID.fullmatch(step_spec.id):
            problems.append(problem((*loc, "id"), "a step id is a letter or _ then letters, digits or _ (64 at most)"))
        elif step_spec.id in seen:
            problems.append(problem((*loc, "id"), f"step {seen[step_spec.id] + 1} has the same id; ids are unique"))
        seen.setdefault(step_spec.id, index)
        try:
            ToolId.parse(step_spec.tool_id)
        except InvalidToolIdError as exc:
            problems.append(problem((*loc, "tool_id"), exc.details["reason"] + "; write 'namespace:name'"))
        reads = _Reads(declared, ids, index)
        compiled = _compile_step(step_spec, index, reads, loc, problem, problems)
        if compiled is not None:
            steps.append(compiled)
    output = None
    if spec.output is not None:
        try:
            output = Template.compile(spec.output)
        except ExpressionError as exc:
            problems.append(problem(("output",), exc.reason, exc.where))
        else:
            checks = _Reads(declared, ids, len(ids)).checks(item=False)
            problems += [problem(("output",), e.reason, e.where) for e in check_reads(output.reads(), checks)]
    if any(p.severity == "error" for p in problems):
        return None, problems
    recipe = Recipe(
        name=spec.name,
        description=spec.description.strip(),
        inputs=inputs,
        steps=tuple(steps),
        output=output,
        tags=tuple(spec.tags),
        path=path,
        digest=digest,
        lines=line_of,
    )
    return recipe, problems


def _compile_step(
    spec: StepSpec,
    index: int,
    reads: _Reads,
    loc: Loc,
    problem: Callable[[Loc, str, str], LoadProblem],
    problems: list[LoadProblem],
) -> Step | None:
    before = len(problems)
    expressions: dict[str, Expression | None] = {}
    for key in ("when", "foreach"):
        source = getattr(spec, key)
        if source is None or isinstance(source, bool):
            expressions[key] = None
            continue
        try:
            expression = Expression.parse(source)
        except ExpressionError as exc:
            problems.append(problem((*loc, key), exc.reason, ""))
            continue
        expressions[key] = expression
        where = [("", path) for path in expression.reads]
        problems += [problem((*loc, key), e.reason, "") for e in check_reads(where, reads.checks(item=False))]
    try:
        args = Template.compile(spec.args)
    except ExpressionError as exc:
        problems.append(problem((*loc, "args"), exc.reason, exc.where))
        return None
    checks = reads.checks(item=spec.foreach is not None)
    for error in check_reads(args.reads(), checks):
        problems.append(problem((*loc, "args"), error.reason, error.where))
    if len(problems) > before:
        return None
    when = expressions.get("when")
    if spec.when is False:  # a step switched off by hand: never runs
        when = Expression.parse("`false`")
    foreach = expressions.get("foreach")
    return Step(
        id=spec.id,
        index=index,
        tool_id=spec.tool_id,
        args=args,
        when=when,
        foreach=foreach,
        concurrency=spec.concurrency,
    )


class _Reads:
    """What the templates of one step (or of the output, `index` past the last step) may read."""

    def __init__(self, declared: set[str], ids: list[str], index: int) -> None:
        self.declared = declared
        self.ids = ids
        self.index = index

    def checks(self, *, item: bool) -> dict[str, Callable[[ReadPath], str | None]]:
        checks: dict[str, Callable[[ReadPath], str | None]] = {
            "inputs": self._input,
            "steps": self._step,
            "previous": self._previous,
        }
        if item:
            checks["item"] = checks["index"] = lambda path: None
        return checks

    def _input(self, path: ReadPath) -> str | None:
        if len(path) < 2 or path[1] in self.declared:
            return None
        known = ", ".join(sorted(self.declared)) or "none"
        return (
            f"inputs.{path[1]} is not a declared input (declared: {known}); add it under inputs.properties "
            "or fix the name"
        )

    def _step(self, path: ReadPath) -> str | None:
        if len(path) < 2:
            return None
        name = path[1]
        if name not in self.ids:
            return f"steps.{name} names no step; the steps are {', '.join(self.ids)}"
        position = self.ids.index(name)
        if position >= self.index:
            return (
                f"steps.{name} is step {position + 1}, which has not run yet when step {self.index + 1} runs; "
                "a step reads only the steps before it"
            )
        return None

    def _previous(self, path: ReadPath) -> str | None:
        if self.index == 0:
            return "'previous' is the step before, and the first step has none; read inputs instead"
        return None


def _inputs_schema(schema: Mapping[str, Any]) -> dict[str, Any] | str:
    """The inputs' JSON Schema, as an object schema; or what is wrong with it."""
    schema = dict(schema)
    if "type" not in schema:
        schema["type"] = "object"
    if schema["type"] != "object":
        return "the inputs schema describes an object (type: object, with properties)"
    if not isinstance(schema.get("properties", {}), Mapping):
        return "inputs.properties maps each input's name to its JSON Schema"
    schema.setdefault("properties", {})
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        at = ".".join(str(p) for p in exc.absolute_path)
        return f"not a valid JSON Schema{f' at {at}' if at else ''}: {exc.message}"
    return schema


def _first_key(where: str) -> Loc:
    key = re.split(r"[.\[]", where, maxsplit=1)[0] if where else ""
    return (key,) if key else ()


def _loc(loc: Any) -> Loc:
    return tuple(loc)


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return "required"
    if error["type"] == "extra_forbidden":
        return (
            "unknown key (a recipe has name, description, inputs, steps, output, tags; a step has id, tool_id, "
            "args, when, foreach)"
        )
    return str(error["msg"]).removeprefix("Value error, ")


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(text: str) -> tuple[Any, Callable[[Loc], int | None]]:
    """The document in `text` (safe loading) and a function giving the line of a key path in it.

    Raises:
        yaml.YAMLError: the text is not YAML.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return data, (lambda loc: line_of(root, loc))
