"""Toolsets: named views of the catalog, chosen by rules, with optional renames and description overrides.

A toolset's `include` rules pick tools (any rule; within a rule, every criterion that is given), its `exclude`
rules take tools out again, `rename` gives a tool another name in its namespace, and `descriptions` another
description. A renamed tool is known in the view only by its new id: the old one is unknown there.

This module is pure matching over `Tool`s: who may use which toolset, and how a request names one, is the
business of the operations layer and the surfaces.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aperture.model import InvalidToolIdError, Tool, ToolId, ToolSummary
from aperture.model.ids import validate_part
from aperture.model.tool import short_description

TOOLSET_ID_PREFIX = "toolset:"
"""How list_toolsets names a toolset (`toolset:readonly`), as the reference server does."""
TOOLSET_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""A toolset's name: lowercase, as it appears in a URL path (`/mcp/readonly`)."""
# Ids and names as a query may hold them, and which of them look like identifiers (as the index tells them).
_IDENTIFIER_RUN = re.compile(r"[A-Za-z0-9_.:/\-]*[A-Za-z0-9_]")
_IDENTIFIER_LIKE = re.compile(r"[_.:/\-]|[a-z][A-Z]")

Hint = Literal["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"]


def hint_of(tool: Tool, hint: Hint) -> bool:
    """The value of an MCP annotation hint for `tool`, with MCP's defaults for what the tool leaves unset.

    Unset hints are `readOnlyHint` false, `destructiveHint` true, `idempotentHint` false and `openWorldHint`
    true; a read-only tool is neither destructive nor anything but idempotent (MCP: those two hints count only
    for tools that are not read-only).
    """
    notes = tool.annotations
    read_only = bool(notes.read_only)
    if hint == "readOnlyHint":
        return read_only
    if hint == "destructiveHint":
        return False if read_only else notes.destructive is not False
    if hint == "idempotentHint":
        return True if read_only else bool(notes.idempotent)
    return notes.open_world is not False


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolsetRule(_Model):
    """Which tools a rule selects: those meeting every criterion it gives (each list: any of its items)."""

    namespaces: list[str] = Field(default_factory=list, description="Namespace globs, e.g. 'github' or 'git*'.")
    tools: list[str] = Field(default_factory=list, description="Tool-id globs, e.g. 'github:list_*'.")
    tags: list[str] = Field(default_factory=list, description="Tags; a tool with any of them matches.")
    annotations: dict[Hint, bool] = Field(
        default_factory=dict,
        description="MCP annotation hints a tool must have, e.g. {readOnlyHint: true}; unset hints take MCP's "
        "defaults (readOnlyHint false, destructiveHint true, idempotentHint false, openWorldHint true).",
    )

    @model_validator(mode="after")
    def _some_criterion(self) -> ToolsetRule:
        if not (self.namespaces or self.tools or self.tags or self.annotations):
            raise ValueError("a rule needs at least one of namespaces, tools, tags or annotations")
        return self

    def matches(self, tool: Tool) -> bool:
        """Does `tool` meet every criterion of this rule?"""
        namespaces, tools, tags = self._compiled
        if namespaces is not None and namespaces.match(tool.namespace) is None:
            return False
        if tools is not None and tools.match(tool.key) is None:
            return False
        if tags and tags.isdisjoint(t.lower() for t in tool.tags):
            return False
        return all(hint_of(tool, hint) == wanted for hint, wanted in self.annotations.items())

    @property
    def by_id(self) -> bool:
        """Is the rule decided by a tool's id alone (namespace and id globs; tags and annotations need the tool)?"""
        return not (self.tags or self.annotations)

    def matches_id(self, key: str) -> bool:
        """Do the rule's namespace and id globs match the id `key` (its other criteria aside)?"""
        namespaces, tools, _ = self._compiled
        if namespaces is not None and namespaces.match(key.partition(":")[0]) is None:
            return False
        return tools is None or tools.match(key) is not None

    @cached_property
    def _compiled(self) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None, frozenset[str]]:
        """The globs as one regular expression each (a catalog of 10k tools is matched per rule), the tags
        lowercased."""
        return _globs(self.namespaces), _globs(self.tools), frozenset(t.lower() for t in self.tags)

    def label(self) -> str:
        """The rule in a few words, for messages: `namespaces gihub, tags read`."""
        given = (("namespaces", self.namespaces), ("tools", self.tools), ("tags", self.tags))
        parts = [f"{what} {', '.join(values)}" for what, values in given if values]
        parts += [f"{hint}: {str(value).lower()}" for hint, value in self.annotations.items()]
        return "; ".join(parts)


def _globs(globs: Sequence[str]) -> re.Pattern[str] | None:
    """`fnmatch` globs (case-sensitive) as one pattern matching any of them; None for none."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None


def _rules(value: Any) -> Any:
    return [value] if isinstance(value, Mapping) else value  # one rule may be written without the list


class ToolsetConfig(_Model):
    """One toolset of the `toolsets:` section."""

    name: str = Field(pattern=TOOLSET_NAME, description="Its name, also its URL path: /mcp/<name>.")
    description: str = Field("", description="What the toolset is for (list_toolsets shows it).")
    include: list[ToolsetRule] = Field(
        default_factory=list, description="Rules selecting its tools (any rule); none: every tool."
    )
    exclude: list[ToolsetRule] = Field(default_factory=list, description="Rules taking tools out again (any rule).")
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Tool id -> new name in the same namespace; in the toolset the tool has only the new id.",
    )
    descriptions: dict[str, str] = Field(default_factory=dict, description="Tool id -> description in the toolset.")

    _one_rule = field_validator("include", "exclude", mode="before")(classmethod(lambda cls, v: _rules(v)))

    @field_validator("rename", "descriptions")
    @classmethod
    def _tool_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            try:
                if ToolId.parse(key).version is not None:
                    raise ValueError(f"{key!r}: give the tool id without a version")
            except InvalidToolIdError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("rename")
    @classmethod
    def _new_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, name in value.items():
            try:
                validate_part(name, "new name")
            except InvalidToolIdError as exc:
                raise ValueError(
                    f"rename of {key!r}: {exc.details['reason']}; give the new name within the tool's namespace, "
                    f"e.g. '{key.partition(':')[0]}:{key.partition(':')[2]}' -> 'new_name'"
                ) from None
        return value

    @property
    def id(self) -> str:
        """`toolset:<name>`, the id list_toolsets gives."""
        return TOOLSET_ID_PREFIX + self.name

    def selects(self, tool: Tool) -> bool:
        """Is `tool` in this toolset (included by a rule, or by default, and excluded by none)?"""
        included = not self.include or any(rule.matches(tool) for rule in self.include)
        return included and not any(rule.matches(tool) for rule in self.exclude)

    def view(self, tools: Iterable[Tool]) -> ToolsetView:
        """This toolset over `tools` (the catalog)."""
        keys = [tool.key for tool in tools if self.selects(tool)]
        chosen = frozenset(keys)
        renamed = {key: f"{key.partition(':')[0]}:{name}" for key, name in self.rename.items() if key in chosen}
        described = {key: text for key, text in self.descriptions.items() if key in chosen}
        return ToolsetView.of((self.name,), chosen, renamed, described, sources=(self,))

    def selects_id(self, key: str) -> bool:
        """Would this toolset hold a tool with the catalog id `key`, whatever the tool says of itself? Only where
        the id decides: an include rule of globs alone matches it (or there are no includes), and no exclude
        rule's globs do (an exclude rule that also needs the tool might take it out: it counts as matching)."""
        included = not self.include or any(rule.by_id and rule.matches_id(key) for rule in self.include)
        return included and not any(rule.matches_id(key) for rule in self.exclude)

    def covers_namespace(self, namespace: str) -> bool:
        """Does the toolset name `namespace` as a whole (no includes, or an include rule of namespace globs alone;
        no exclude rule of namespace globs alone)? It then holds the namespace's resources and prompts even
        while the namespace has no tool in it: a resource-only backend, or one whose tools are not listed yet."""

        def whole(rule: ToolsetRule) -> bool:
            return bool(rule.namespaces) and not (rule.tools or rule.tags or rule.annotations)

        probe = f"{namespace}:"
        included = not self.include or any(whole(rule) and rule.matches_id(probe) for rule in self.include)
        return included and not any(whole(rule) and rule.matches_id(probe) for rule in self.exclude)

    def catalog_key(self, public: str) -> str | None:
        """The catalog id of the tool this toolset calls `public` (a renamed tool's new id gives its catalog id);
        None for a renamed tool's old id, which the toolset does not know."""
        namespace = public.partition(":")[0]
        for key, name in self.rename.items():
            if key.partition(":")[0] == namespace and public == f"{namespace}:{name}":
                return key
        return None if public in self.rename else public

    def problems(self, tools: Sequence[Tool], namespaces: Collection[str] = ()) -> list[ToolsetProblem]:
        """What in this toolset selects nothing in `tools`: rules that match no tool, the toolset as a whole,
        renames and descriptions of tools it does not hold, renames onto an id it already shows.

        An exclude rule made only of annotations is a safety net for tools yet to come, so it may match none. A
        rule of namespace globs alone that names one of `namespaces` (the configured backends) selects that
        namespace's resources and prompts, so it is no problem without tools (a resource-only backend).
        """
        covered = any(self.covers_namespace(namespace) for namespace in namespaces)
        # One pass: each rule is tried until it has matched once, besides the selection itself.
        unmatched = {
            ("include", i): rule
            for i, rule in enumerate(self.include)
            if not (
                rule.namespaces and rule.by_id and not rule.tools and any(rule.matches_id(f"{n}:") for n in namespaces)
            )
        }
        unmatched |= {("exclude", i): r for i, r in enumerate(self.exclude) if r.namespaces or r.tools or r.tags}
        included: list[str] = []
        keys: set[str] = set()
        for tool in tools:
            for where, rule in list(unmatched.items()):
                if rule.matches(tool):
                    del unmatched[where]
            if not self.include or any(rule.matches(tool) for rule in self.include):
                included.append(tool.key)
                if not any(rule.matches(tool) for rule in self.exclude):
                    keys.add(tool.key)
        found = [
            self._problem(f"{kind}[{i}] ({rule.label()}) matches no tool")
            for (kind, i), rule in sorted(unmatched.items(), key=lambda item: (item[0][0] != "include", item[0][1]))
        ]
        if not keys and included and not covered:
            found.append(self._problem(f"its excludes take out all {len(included)} tools its includes select"))
        elif not keys and not found and not covered:
            found.append(self._problem("matches no tool"))
        for what, named in (("rename", self.rename), ("descriptions", self.descriptions)):
            found += [
                self._problem(f"{what} names '{key}', which is not in the toolset") for key in named if key not in keys
            ]
        shown: dict[str, str] = {}
        for key, name in sorted(self.rename.items()):
            public = f"{key.partition(':')[0]}:{name}"
            if key not in keys or public == key:
                continue
            other = shown.get(public) or (public if public in keys and public not in self.rename else None)
            if other is not None:
                found.append(
                    self._problem(
                        f"rename gives '{key}' the id '{public}', which '{other}' has in the toolset; choose "
                        "another name, or exclude one of them"
                    )
                )
            shown[public] = key
        return found

    def _problem(self, what: str) -> ToolsetProblem:
        return ToolsetProblem(toolset=self.name, message=f"toolset '{self.name}': {what}")


@dataclass(frozen=True, slots=True)
class ToolsetProblem:
    """Something in a toolset that selects nothing (see `ToolsetConfig.problems`)."""

    toolset: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True, eq=False)
class ToolsetView:
    """What one toolset (or the union of several) shows of one catalog: immutable.

    Ids in a view are public ids: a renamed tool's new id. `keys` holds catalog keys; `resolve` turns a public
    id into its catalog key, `public_key` the other way.
    """

    names: tuple[str, ...]
    keys: frozenset[str]
    namespaces: frozenset[str]
    _public: Mapping[str, str] = field(default_factory=dict)  # catalog key -> public key, renamed tools only
    _catalog: Mapping[str, str] = field(default_factory=dict)  # public key -> catalog key, renamed tools only
    _descriptions: Mapping[str, str] = field(default_factory=dict)  # catalog key -> description in the view
    _query_words: Mapping[str, str] = field(default_factory=dict)  # see `catalog_query`
    sources: tuple[ToolsetConfig, ...] = ()
    """The toolsets the view was made from (their rules answer for what the catalog does not hold now)."""
    changed: frozenset[str] = frozenset()
    """The catalog keys of the tools the view shows otherwise than the catalog (a new id or description)."""

    @classmethod
    def of(
        cls,
        names: tuple[str, ...],
        keys: frozenset[str],
        renamed: Mapping[str, str],
        described: Mapping[str, str],
        *,
        sources: tuple[ToolsetConfig, ...] = (),
    ) -> ToolsetView:
        catalog: dict[str, str] = {}
        for key, public in renamed.items():
            catalog.setdefault(public, key)
        return cls(
            names=names,
            keys=keys,
            namespaces=frozenset(key.partition(":")[0] for key in keys),
            _public=MappingProxyType(dict(renamed)),
            _catalog=MappingProxyType(catalog),
            _descriptions=MappingProxyType(dict(described)),
            changed=frozenset(renamed).union(described),
            _query_words=MappingProxyType(_query_words(renamed)),
            sources=sources,
        )

    @classmethod
    def union(cls, views: Sequence[ToolsetView]) -> ToolsetView:
        """Every tool of any of `views`; a tool two of them change is shown as the first one shows it."""
        if len(views) == 1:
            return views[0]
        renamed: dict[str, str] = {}
        described: dict[str, str] = {}
        for view in reversed(views):
            renamed.update(view._public)
            described.update(view._descriptions)
        keys = frozenset().union(*(view.keys for view in views))
        names = tuple(name for view in views for name in view.names)
        return cls.of(names, keys, renamed, described, sources=tuple(c for view in views for c in view.sources))

    @property
    def changes(self) -> bool:
        """Whether the view shows some tool other than the catalog does (a new name or description)."""
        return bool(self.changed)

    def contains(self, key: str) -> bool:
        """Is the catalog's tool `key` in the view (under its own id, or a new one)?"""
        return key in self.keys

    def resolve(self, public: str) -> str | None:
        """The catalog key of the tool the view calls `public`; None for an id the view does not show (one
        outside it, or the old id of a renamed tool)."""
        key = self._catalog.get(public)
        if key is not None:
            return key
        return public if public in self.keys and public not in self._public else None

    def covers(self, namespace: str) -> bool:
        """Are `namespace`'s resources and prompts in the view: it has tools of it, or a toolset names it whole
        (see `ToolsetConfig.covers_namespace`)?"""
        return namespace in self.namespaces or any(config.covers_namespace(namespace) for config in self.sources)

    def absent_key(self, public: str) -> str | None:
        """The catalog id that `public` would name in the view, for a tool the catalog does not hold now (its
        backend is down, say), where the view's rules decide by the id alone; None otherwise. So a call to it
        says why it cannot run instead of calling it unknown."""
        for config in self.sources:
            key = config.catalog_key(public)
            if key is not None and config.selects_id(key):
                return key
        return None

    def catalog_query(self, query: str) -> str:
        """`query` as the catalog's index reads it: a renamed tool's new id or name becomes its catalog id, so
        naming it exactly finds it first, as for any tool; its old id or name, unknown in the view, becomes plain
        words (found by meaning). As in the index, a plain-word name counts only as the whole query."""
        words = self._query_words
        if not words:
            return query
        whole = words.get(query.strip().strip("`'\"").lower())
        if whole is not None:
            return whole

        def swap(run: re.Match[str]) -> str:
            text = run.group(0)
            return words.get(text.lower(), text) if _IDENTIFIER_LIKE.search(text) else text

        return _IDENTIFIER_RUN.sub(swap, query)

    def public_key(self, key: str) -> str:
        """The id the view shows the catalog's tool `key` under."""
        return self._public.get(key, key)

    def present(self, tool: Tool) -> Tool:
        """`tool` as the view shows it: its new id and description, if it has them."""
        public = self._public.get(tool.key)
        description = self._descriptions.get(tool.key)
        if public is None and description is None:
            return tool
        new_id = tool.id if public is None else ToolId(tool.namespace, public.partition(":")[2], tool.version)
        return replace(tool, id=new_id, description=tool.description if description is None else description)

    def summarize(self, hit: ToolSummary) -> ToolSummary:
        """A search hit (of the catalog's tool `hit.id`) as the view shows it."""
        public = self._public.get(hit.id)
        description = self._descriptions.get(hit.id)
        if public is None and description is None:
            return hit
        return replace(
            hit,
            id=hit.id if public is None else public,
            name=hit.name if public is None else public.partition(":")[2],
            short_description=hit.short_description if description is None else short_description(description),
        )


def _query_words(renamed: Mapping[str, str]) -> dict[str, str]:
    """Lowercased id or name -> what `ToolsetView.catalog_query` puts in its place."""
    words: dict[str, str] = {}
    for key in renamed:  # old ids first: in a swap, one tool's old name is the other's new one
        for old in (key, key.partition(":")[2]):
            words[old.lower()] = re.sub(r"[_.:/\-]+", " ", old)
    for key, public in renamed.items():
        words[public.lower()] = words[public.partition(":")[2].lower()] = key
    return words


EMPTY_VIEW = ToolsetView(names=(), keys=frozenset(), namespaces=frozenset())
"""A view of nothing: what a caller bound only to toolsets that are not configured sees."""


class Toolsets:
    """The configured toolsets by name, with their views of the current catalog (kept per catalog version)."""

    def __init__(self, configs: Sequence[ToolsetConfig]) -> None:
        self.configs: Mapping[str, ToolsetConfig] = MappingProxyType({c.name: c for c in configs})
        self._version: int | None = None
        self._views: dict[tuple[str, ...], ToolsetView] = {}

    @property
    def names(self) -> list[str]:
        """The toolsets' names, in configuration order."""
        return list(self.configs)

    def __bool__(self) -> bool:
        return bool(self.configs)

    def __contains__(self, name: object) -> bool:
        return name in self.configs

    def view(self, names: Sequence[str], tools: Mapping[str, Tool], version: int) -> ToolsetView:
        """The union of the toolsets `names` over `tools` (catalog version `version`); names not configured
        add nothing, so a view of only such names is empty."""
        key = tuple(names)
        if version != self._version:
            self._version, self._views = version, {}
        found = self._views.get(key)
        if found is None:
            parts = [self._one(name, tools) for name in key if name in self.configs]
            found = ToolsetView.union(parts) if parts else EMPTY_VIEW
            if len(self._views) > 256:
                self._views = {}
            self._views[key] = found
        return found

    def _one(self, name: str, tools: Mapping[str, Tool]) -> ToolsetView:
        found = self._views.get((name,))
        if found is None:
            found = self._views[(name,)] = self.configs[name].view(tools.values())
        return found

    def problems(self, tools: Sequence[Tool], namespaces: Collection[str] = ()) -> list[ToolsetProblem]:
        """Every toolset's problems over `tools` and the backends `namespaces` (see `ToolsetConfig.problems`)."""
        return [problem for config in self.configs.values() for problem in config.problems(tools, namespaces)]
