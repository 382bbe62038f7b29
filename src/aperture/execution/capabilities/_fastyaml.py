"""YAML for capability files, about twice as fast as `yaml.load(..., CSafeLoader)` with the same result.

libyaml still scans and composes the node tree; what changes is the Python around it. PyYAML's `SafeConstructor`
builds every value through a generic, generator-based path (tag lookup, recursion bookkeeping, merge-key
flattening) that costs more than the C parsing itself. Capability files are plain mappings, lists and scalars,
so a direct loop builds them; anything else (merge keys `<<`, `!!set`, `!!omap`, unknown tags, unhashable keys,
very deep nesting) falls back to PyYAML's own constructor, which also raises its usual errors. The composed root
node is kept, so line numbers for a problem need no second parse.
"""

from __future__ import annotations

import functools
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when it is there

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# Scalar tags whose safe constructors are plain functions of one node (no generators, no constructor state).
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)


class _Fallback(Exception):
    """The document needs PyYAML's general constructor."""


class FastLoader(_Base):  # type: ignore[misc]
    """A safe loader (libyaml's when available) with a direct constructor for plain data.

    `root` is the composed node tree of the last document, for looking up line numbers afterwards.
    """

    root: Node | None = None

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        return None  # path resolvers only; the safe loader has none

    def ascend_resolver(self) -> None:
        return None

    @staticmethod
    @functools.lru_cache(maxsize=1024)
    def resolve(kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        """`Resolver.resolve` without path resolvers (the safe loader has none), called by libyaml for every node.

        Cached: keys and common values recur across files, and a C-level cache hit skips the Python call.
        """
        if kind is ScalarNode:
            if implicit[0]:
                assert value is not None
                for tag, regexp in _BY_FIRST_CHAR.get(value[:1], _WILDCARD):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is SequenceNode else _MAP

    def construct_document(self, node: Node) -> Any:
        self.root = node
        try:
            return _Builder(self).value(node)
        except (_Fallback, RecursionError, TypeError):
            return super().construct_document(node)  # merge keys, sets, odd tags, and PyYAML's own errors


assert not _Base.yaml_path_resolvers, "FastLoader.resolve assumes the safe loader has no path resolvers"
_IMPLICIT: dict[str | None, list[tuple[str, Any]]] = _Base.yaml_implicit_resolvers
_WILDCARD = tuple(_IMPLICIT.get(None, []))  # resolvers tried whatever the first character
# The implicit resolvers by first character, wildcard ones appended: what `Resolver.resolve` looks up per call.
_BY_FIRST_CHAR = {first: (*resolvers, *_WILDCARD) for first, resolvers in _IMPLICIT.items() if first is not None}


class _Builder:
    """Builds one document's values; an alias yields the very object its anchor built (as PyYAML does)."""

    __slots__ = ("built", "loader", "scalar")

    def __init__(self, loader: FastLoader) -> None:
        self.loader = loader
        self.scalar = loader.yaml_constructors
        self.built: dict[Node, Any] = {}

    def value(self, node: Node) -> Any:
        tag = node.tag
        if node.__class__ is ScalarNode:
            if tag == _STR:
                return node.value
            if tag in _SCALAR_TAGS:
                return self.scalar[tag](self.loader, node)
            raise _Fallback
        done = self.built.get(node)
        if done is not None:
            return done
        # Plain strings, most of the nodes, are taken inline: a call per node is what costs here.
        if node.__class__ is MappingNode and tag == _MAP:
            mapping: dict[Any, Any] = {}
            self.built[node] = mapping  # before the children, so a recursive alias finds it
            for key_node, value_node in node.value:
                # a merge key `<<` has its own tag: _Fallback; an unhashable key: TypeError
                key = (
                    key_node.value
                    if key_node.tag == _STR and key_node.__class__ is ScalarNode
                    else self.value(key_node)
                )
                if value_node.tag == _STR and value_node.__class__ is ScalarNode:
                    mapping[key] = value_node.value
                else:
                    mapping[key] = self.value(value_node)
            return mapping
        if node.__class__ is SequenceNode and tag == _SEQ:
            items: list[Any] = []
            self.built[node] = items
            for child in node.value:
                items.append(child.value if child.tag == _STR and child.__class__ is ScalarNode else self.value(child))
            return items
        raise _Fallback


def load_yaml(text: str) -> tuple[Any, Node | None]:
    """The one document in `text` as plain Python data, and its node tree (None for an empty document).

    Raises:
        yaml.YAMLError: as `yaml.safe_load` would (marked errors carry the line).
    """
    loader = FastLoader(text)
    try:
        return loader.get_single_data(), loader.root
    finally:
        loader.dispose()
