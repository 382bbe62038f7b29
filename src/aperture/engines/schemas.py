"""JSON Schemas of the engine tools, from the contract models, in the wire (camelCase) names."""

from __future__ import annotations

import copy
from typing import Any, Literal

from aperture.engines.contracts import BatchBuildInput, BuildInput, _Wire
from aperture.model._schema import tidy_schema


def schema_of(model: type[_Wire], *, mode: Literal["validation", "serialization"] = "validation") -> dict[str, Any]:
    """The model's JSON Schema without pydantic's generated titles (tokens an agent would pay for)."""
    return tidy_schema(model.model_json_schema(by_alias=True, mode=mode))


def batch_input_schema() -> dict[str, Any]:
    """`buildBatch`'s schema: each item documented as a `build` input but checked on its own.

    The items carry `build`'s properties without `required`, so a caller sees what an item holds while a
    single bad item fails alone (reported in the result) instead of rejecting the whole batch up front.
    """
    schema = schema_of(BatchBuildInput)
    item = copy.deepcopy(schema_of(BuildInput))
    item.pop("required", None)
    item["additionalProperties"] = True
    item["description"] = "A build input as for `build`: name and engine required."
    schema["properties"]["specs"]["items"] = item
    return schema
