"""Toolsets as pure matching over tools: which tools a toolset's rules select, how a view names and shows
them, and what in a toolset selects nothing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aperture.compose import EMPTY_VIEW, ToolsetConfig, Toolsets, ToolsetView, hint_of
from aperture.config import parse_config
from aperture.model import ConfigError, Tool, ToolAnnotations, ToolId, ToolSummary


def tool(
    key: str,
    *,
    tags: tuple[str, ...] = (),
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
) -> Tool:
    namespace, _, name = key.partition(":")
    hints = ToolAnnotations(read_only=read_only, destructive=destructive, idempotent=idempotent, open_world=open_world)
    return Tool(id=ToolId(namespace, name), description="Does a thing.", tags=tags, annotations=hints)


CATALOG = [
    tool("github:list_issues", tags=("issues", "read"), read_only=True),
    tool("github:create_issue", tags=("issues",), destructive=False),
    tool("github:delete_repo", destructive=True),
    tool("gitlab:list_merge_requests", tags=("read",), read_only=True),
    tool("toolbox:hash_text", tags=("hash", "Text"), read_only=True, idempotent=True),
    tool("toolbox:slugify", tags=("text", "url"), read_only=True),
    tool("shell:run"),
]


def toolset(**fields: Any) -> ToolsetConfig:
    return ToolsetConfig.model_validate({"name": "t", **fields})


def selected(**fields: Any) -> list[str]:
    return sorted(toolset(**fields).view(CATALOG).keys)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"include": [{"namespaces": ["git*"]}]}, ["github:create_issue", "github:delete_repo",
         "github:list_issues", "gitlab:list_merge_requests"]),
        ({"include": [{"tags": ["read", "url"]}]}, ["github:list_issues", "gitlab:list_merge_requests",
         "toolbox:slugify"]),
        ({"include": [{"tags": ["TEXT"]}]}, ["toolbox:hash_text", "toolbox:slugify"]),
        ({"include": [{"tools": ["*:list_*"]}]}, ["github:list_issues", "gitlab:list_merge_requests"]),
        ({"include": [{"annotations": {"readOnlyHint": True}}]}, ["github:list_issues",
         "gitlab:list_merge_requests", "toolbox:hash_text", "toolbox:slugify"]),
        ({"include": [{"namespaces": ["github"], "annotations": {"readOnlyHint": True}}]}, ["github:list_issues"]),
        ({"include": [{"namespaces": ["toolbox"]}, {"tools": ["shell:*"]}]}, ["shell:run", "toolbox:hash_text",
         "toolbox:slugify"]),
        ({"exclude": [{"annotations": {"destructiveHint": True}}]}, ["github:create_issue", "github:list_issues",
         "gitlab:list_merge_requests", "toolbox:hash_text", "toolbox:slugify"]),
        ({"include": {"namespaces": ["github"]}, "exclude": {"tools": ["github:delete_*"]}}, ["github:create_issue",
         "github:list_issues"]),
    ],
    ids=["namespace-glob", "any-tag", "tags-ignore-case", "id-glob", "read-only", "criteria-together",
         "rules-either", "exclude-destructive", "one-rule-without-a-list"],
)  # fmt: skip
def test_rules_select_by_namespace_tag_id_and_annotations(fields: dict[str, Any], expected: list[str]) -> None:
    assert selected(**fields) == expected


def test_unset_hints_take_the_mcp_defaults_and_read_only_tools_are_neither_destructive_nor_not_idempotent() -> None:
    bare = tool("x:y")
    assert not hint_of(bare, "readOnlyHint") and hint_of(bare, "destructiveHint")
    assert not hint_of(bare, "idempotentHint") and hint_of(bare, "openWorldHint")
    reader = tool("x:r", read_only=True, destructive=True)
    assert not hint_of(reader, "destructiveHint") and hint_of(reader, "idempotentHint")
    assert not hint_of(tool("x:w", open_world=False), "openWorldHint")


def test_a_renamed_tool_has_only_its_new_id_in_the_view() -> None:
    view = toolset(rename={"toolbox:hash_text": "digest"}, descriptions={"toolbox:slugify": "Slugs. Short ones."}).view(
        CATALOG
    )
    assert view.resolve("toolbox:digest") == "toolbox:hash_text"
    assert view.resolve("toolbox:hash_text") is None  # the old id is unknown in the view
    assert view.resolve("toolbox:slugify") == "toolbox:slugify" and view.resolve("nope:x") is None
    assert view.public_key("toolbox:hash_text") == "toolbox:digest" and view.changes
    shown = view.present(CATALOG[4])
    assert (shown.key, shown.name, shown.description) == ("toolbox:digest", "digest", "Does a thing.")
    assert shown.input_schema is CATALOG[4].input_schema and shown.tags == CATALOG[4].tags
    slug = view.present(CATALOG[5])
    assert slug.key == "toolbox:slugify" and slug.description == "Slugs. Short ones."
    hit = view.summarize(ToolSummary.of(CATALOG[4], 2.0))
    assert (hit.id, hit.name, hit.score) == ("toolbox:digest", "digest", 2.0)
    assert view.summarize(ToolSummary.of(CATALOG[5], 1.0)).short_description == "Slugs."
    assert view.present(CATALOG[0]) is CATALOG[0]  # untouched tools are shown as they are


def test_a_union_holds_every_tool_of_its_parts_the_first_part_naming_a_tool_both_change() -> None:
    first = ToolsetConfig.model_validate(
        {"name": "a", "include": [{"namespaces": ["toolbox"]}], "rename": {"toolbox:slugify": "slug"}}
    )
    second = ToolsetConfig.model_validate(
        {"name": "b", "include": [{"tools": ["toolbox:slugify", "shell:*"]}], "rename": {"toolbox:slugify": "s"}}
    )
    both = ToolsetView.union([first.view(CATALOG), second.view(CATALOG)])
    assert both.names == ("a", "b")
    assert sorted(both.keys) == ["shell:run", "toolbox:hash_text", "toolbox:slugify"]
    assert both.resolve("toolbox:slug") == "toolbox:slugify" and both.namespaces == {"toolbox", "shell"}
    sets = Toolsets([first, second])
    assert sets.view(["a", "b"], {t.key: t for t in CATALOG}, 1).keys == both.keys
    assert sets.view(["a", "missing"], {t.key: t for t in CATALOG}, 1).names == ("a",)
    assert sets.view(["missing"], {t.key: t for t in CATALOG}, 1) is EMPTY_VIEW


def test_views_are_kept_per_catalog_version() -> None:
    sets = Toolsets([toolset(include=[{"namespaces": ["toolbox"]}])])
    tools = {t.key: t for t in CATALOG}
    first = sets.view(["t"], tools, 1)
    assert sets.view(["t"], tools, 1) is first
    grown = {**tools, "toolbox:new": tool("toolbox:new")}
    assert "toolbox:new" in sets.view(["t"], grown, 2).keys


def test_every_rule_that_matches_nothing_is_named() -> None:
    include = [{"namespaces": ["gihub"]}, {"tags": ["read"]}, {"annotations": {"readOnlyHint": True}, "tags": ["nope"]}]
    exclude = [{"tools": ["github:delet_*"]}, {"annotations": {"openWorldHint": False}}]
    problems = [str(p) for p in toolset(include=include, exclude=exclude).problems(CATALOG)]
    assert problems == [
        "toolset 't': include[0] (namespaces gihub) matches no tool",
        "toolset 't': include[2] (tags nope; readOnlyHint: true) matches no tool",
        "toolset 't': exclude[0] (tools github:delet_*) matches no tool",
    ]  # an exclude of annotations only is a safety net for tools yet to come: it may match none


def test_a_toolset_whose_excludes_take_out_everything_says_so() -> None:
    problems = toolset(include=[{"namespaces": ["shell"]}], exclude=[{"tools": ["shell:*"]}]).problems(CATALOG)
    assert [str(p) for p in problems] == ["toolset 't': its excludes take out all 1 tools its includes select"]
    assert [str(p) for p in toolset().problems([])] == ["toolset 't': matches no tool"]


def test_renames_and_descriptions_of_tools_outside_the_toolset_and_clashing_renames_are_problems() -> None:
    config = toolset(
        include=[{"namespaces": ["github"]}],
        rename={"toolbox:slugify": "slug", "github:create_issue": "list_issues"},
        descriptions={"shell:run": "Runs."},
    )
    assert [str(p) for p in config.problems(CATALOG)] == [
        "toolset 't': rename names 'toolbox:slugify', which is not in the toolset",
        "toolset 't': descriptions names 'shell:run', which is not in the toolset",
        "toolset 't': rename gives 'github:create_issue' the id 'github:list_issues', which 'github:list_issues' "
        "has in the toolset; choose another name, or exclude one of them",
    ]
    assert not toolset(rename={"toolbox:slugify": "slug"}).problems(CATALOG)
    both = toolset(rename={"toolbox:slugify": "x", "toolbox:hash_text": "x"}).problems(CATALOG)
    assert [str(p) for p in both] == [
        "toolset 't': rename gives 'toolbox:slugify' the id 'toolbox:x', which 'toolbox:hash_text' has in the "
        "toolset; choose another name, or exclude one of them"
    ]
    swapped = toolset(rename={"toolbox:slugify": "hash_text", "toolbox:hash_text": "slugify"})
    assert not swapped.problems(CATALOG)  # two tools trading names: each new id is taken by no other tool


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Read Only"}, "String should match pattern"),
        ({"name": "t", "include": [{}]}, "a rule needs at least one of namespaces, tools, tags or annotations"),
        ({"name": "t", "include": [{"annotations": {"readOnly": True}}]}, "readOnlyHint"),
        ({"name": "t", "rename": {"toolbox:slugify": "a:b"}}, "give the new name within the tool's namespace"),
        ({"name": "t", "rename": {"slugify": "slug"}}, "it has no namespace"),
        ({"name": "t", "descriptions": {"toolbox:slugify:2": "x"}}, "without a version"),
        ({"name": "t", "include": [{"tools": ["x:*"], "colour": "red"}]}, "Extra inputs are not permitted"),
    ],
    ids=["name-not-a-path", "empty-rule", "unknown-hint", "rename-across-namespaces", "rename-of-a-bare-name",
         "versioned-id", "unknown-key"],
)  # fmt: skip
def test_a_malformed_toolset_is_refused_saying_what_to_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ToolsetConfig.model_validate(fields)
    assert message in str(refused.value)


def test_toolset_names_are_unique_and_bindings_name_configured_toolsets() -> None:
    twice = {"toolsets": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(ConfigError, match="two toolsets are named 'a'"):
        parse_config(twice)
    key = {"name": "ci", "sha256": "0" * 64, "toolsets": ["redonly"]}
    bound = {"toolsets": [{"name": "readonly"}], "ops": {"auth": {"enabled": True, "api_keys": [key]}}}
    with pytest.raises(ConfigError) as refused:
        parse_config(bound)
    assert (
        "ops.auth.api_keys[0] ('ci') is bound to toolset 'redonly', which is not configured; toolsets: readonly"
        in refused.value.message
    )
    binding = {"roles": ["contractor"], "toolsets": ["nope"]}
    with pytest.raises(ConfigError, match=r"ops.auth.bindings\[0\] is bound to toolset 'nope'.*none are configured"):
        parse_config({"ops": {"auth": {"enabled": True, "bindings": [binding]}}})
    with pytest.raises(ConfigError, match="a binding needs roles or scopes"):
        parse_config({"toolsets": [{"name": "a"}], "ops": {"auth": {"bindings": [{"toolsets": ["a"]}]}}})


def test_a_query_naming_a_renamed_tool_reads_as_its_catalog_id_and_its_old_id_as_words() -> None:
    view = toolset(rename={"toolbox:slugify": "make_slug", "toolbox:hash_text": "digest"}).view(CATALOG)
    assert view.catalog_query("toolbox:make_slug") == "toolbox:slugify"
    assert view.catalog_query("use make_slug on the title") == "use toolbox:slugify on the title"
    assert view.catalog_query("digest") == "toolbox:hash_text"  # (a plain-word name: only as the whole query)
    assert view.catalog_query("digest the text") == "digest the text"
    assert view.catalog_query("call toolbox:slugify") == "call toolbox slugify"
    assert view.catalog_query("hash_text please") == "hash text please"
    swapped = toolset(rename={"toolbox:slugify": "hash_text", "toolbox:hash_text": "slugify"}).view(CATALOG)
    assert swapped.catalog_query("toolbox:hash_text or toolbox:slugify") == "toolbox:slugify or toolbox:hash_text"
    assert toolset().view(CATALOG).catalog_query("toolbox:slugify") == "toolbox:slugify"


def test_the_rules_decide_by_id_alone_for_tools_the_catalog_does_not_hold_now() -> None:
    by_namespace = toolset(include=[{"namespaces": ["git*"]}], exclude=[{"tools": ["*:delete_*"]}])
    view = by_namespace.view(CATALOG)
    assert view.absent_key("gitea:list_issues") == "gitea:list_issues"  # (its backend down, say)
    assert view.absent_key("gitea:delete_repo") is None  # (excluded by its id)
    assert view.absent_key("shell:run") is None
    by_tag = toolset(include=[{"namespaces": ["git*"], "tags": ["read"]}]).view(CATALOG)
    assert by_tag.absent_key("gitea:list_issues") is None  # (the tags are the tool's: unknown while it is absent)
    renamed = toolset(include=[{"namespaces": ["gitea"]}], rename={"gitea:list_issues": "issues"}).view(CATALOG)
    assert renamed.absent_key("gitea:issues") == "gitea:list_issues"
    assert renamed.absent_key("gitea:list_issues") is None  # (the old id is unknown in the toolset)


def test_a_toolset_naming_a_namespace_whole_covers_its_resources_without_tools() -> None:
    whole = toolset(include=[{"namespaces": ["notes", "git*"]}], exclude=[{"namespaces": ["gitlab"]}])
    view = whole.view(CATALOG)
    assert view.covers("notes") and view.covers("github") and not view.covers("gitlab")
    assert not toolset(include=[{"namespaces": ["notes"], "tags": ["read"]}]).view(CATALOG).covers("notes")
    assert toolset().view(CATALOG).covers("anything")  # (no includes: the whole catalog)
    resource_only = toolset(include=[{"namespaces": ["notes"]}])
    assert [str(p) for p in resource_only.problems(CATALOG)] == [
        "toolset 't': include[0] (namespaces notes) matches no tool"
    ]
    assert resource_only.problems(CATALOG, namespaces=["notes", "github"]) == []  # (a backend of that name exists)
    assert resource_only.problems(CATALOG, namespaces=["other"]) != []
