"""A tool prepared for search: its text split into fields, tokenized once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aperture.discovery.text import tokenize, tokenize_all
from aperture.model import Tool

FIELDS = ("name", "namespace", "tags", "description", "parameters")


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """The tokens of one tool, by field."""

    tool: Tool
    fields: Mapping[str, list[str]]

    @classmethod
    def of(cls, tool: Tool) -> SearchDoc:
        return cls(
            tool=tool,
            fields={
                "name": tokenize(tool.name, identifier=True) + tokenize(tool.title or ""),
                "namespace": tokenize(tool.namespace, identifier=True) + tokenize(tool.namespace_description),
                "tags": tokenize_all(tool.tags),
                "description": tokenize(tool.description),
                "parameters": _parameter_tokens(tool.input_schema),
            },
        )


def _parameter_tokens(schema: Mapping[str, Any]) -> list[str]:
    """Tokens of the top-level parameters: names (identifiers), descriptions and enum values (prose)."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    names, prose = [], []
    for name, prop in properties.items():
        names.append(str(name))
        if isinstance(prop, Mapping):
            prose.append(str(prop.get("description", "")))
            enum = prop.get("enum")
            if isinstance(enum, list):
                prose += [str(v) for v in enum]
    return tokenize_all(names, identifier=True) + tokenize_all(prose)
