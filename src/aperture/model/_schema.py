"""Tidy pydantic's JSON Schemas for tool listings: no auto-generated titles (tokens an agent pays for)."""

from __future__ import annotations

from typing import Any

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")


def tidy_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `schema` without `title` keywords, which pydantic derives from names anyway."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: tidy_schema(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [tidy_schema(v) if isinstance(v, dict) else v for v in value]
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = tidy_schema(value)
        else:
            out[key] = value
    return out
