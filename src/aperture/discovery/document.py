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
                "name": tokenize_all([tool.name, tool.title or ""]),
                "namespace": tokenize(tool.namespace),
                "tags": tokenize_all(tool.tags),
                "description": tokenize(tool.description),
                "parameters": tokenize_all(_parameter_text(tool.input_schema)),
            },
        )


def _parameter_text(schema: Mapping[str, Any]) -> list[str]:
    """Names, descriptions and enum values of the top-level parameters."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    out = []
    for name, prop in properties.items():
        out.append(str(name))
        if isinstance(prop, Mapping):
            out.append(str(prop.get("description", "")))
            enum = prop.get("enum")
            if isinstance(enum, list):
                out += [str(v) for v in enum]
    return out
