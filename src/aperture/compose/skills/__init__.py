"""Skills: recipes (YAML files of templated tool calls) and instruction skills (SKILL.md folders), served as tools."""

from aperture.compose.skills.backend import SkillBackend, SkillReport
from aperture.compose.skills.catalog import Candidate, Skill, SkillSet, assemble
from aperture.compose.skills.instructions import InstructionSkill, parse_instruction_skill, read_file
from aperture.compose.skills.loader import SkillLoader, Source
from aperture.compose.skills.recipe import Recipe, RecipeSpec, Step, StepSpec, compile_recipe, parse_recipe
from aperture.compose.skills.run import LIMITS_KEY, STACK_KEY, Limits, SkillHost, plan_recipe, run_recipe
from aperture.compose.skills.settings import SkillsSettings

__all__ = [
    "LIMITS_KEY",
    "STACK_KEY",
    "Candidate",
    "InstructionSkill",
    "Limits",
    "Recipe",
    "RecipeSpec",
    "Skill",
    "SkillBackend",
    "SkillHost",
    "SkillLoader",
    "SkillReport",
    "SkillSet",
    "SkillsSettings",
    "Source",
    "Step",
    "StepSpec",
    "assemble",
    "compile_recipe",
    "parse_instruction_skill",
    "parse_recipe",
    "plan_recipe",
    "read_file",
    "run_recipe",
]
