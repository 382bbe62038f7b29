"""The `skills:` section of the configuration: where skills are, their namespace, and the limits on one run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aperture.model import InvalidToolIdError
from aperture.model.ids import validate_part


class SkillsSettings(BaseModel):
    """Recipe skills (`*.yaml` files) and instruction skills (folders with a `SKILL.md`), served as tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(
        min_length=1,
        description="Directories of skills, relative to the configuration file: each *.yaml / *.yml file below "
        "them is a recipe, each folder holding a SKILL.md an instruction skill (a path may also be one such folder).",
    )
    namespace: str = Field("skills", description="The namespace of skill tool ids (skills:<name>).")
    watch: bool = Field(True, description="Reload when a file changes; a broken edit keeps the last good version.")
    max_steps: int = Field(32, ge=1, le=1000, description="Most steps one recipe may have.")
    max_tool_calls: int = Field(
        256, ge=1, le=100_000, description="Most tool calls one run may make, each foreach item counting as one."
    )
    max_foreach: int = Field(
        1000, ge=1, le=100_000, description="Most items one foreach may loop over; a longer list stops the run."
    )
    timeout: float = Field(
        120.0, gt=0, description="Seconds one run may take in all; each step also keeps its own tool's timeout."
    )
    max_resource_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest file of an instruction skill served as a resource."
    )

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        try:
            return validate_part(value, "namespace")
        except InvalidToolIdError as exc:
            raise ValueError(exc.details["reason"]) from None
