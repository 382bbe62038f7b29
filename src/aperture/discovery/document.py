"""A tool prepared for search: its text split into fields, tokenized once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
        params = tool.parameters()
        return cls(
            tool=tool,
            fields={
                "name": tokenize_all([tool.name, tool.title or ""]),
                "namespace": tokenize(tool.namespace),
                "tags": tokenize_all(tool.tags),
                "description": tokenize(tool.description),
                "parameters": tokenize_all(
                    [p.name for p in params]
                    + [p.description for p in params]
                    + [str(v) for p in params for v in (p.enum or ())]
                ),
            },
        )
