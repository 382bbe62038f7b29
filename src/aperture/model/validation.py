"""Argument validation with safe coercion, reporting every problem at once in words a model can act on.

A validator is compiled once per tool. `validate(args)` first applies safe coercions ("123" -> 123 where
the schema wants an integer, a JSON string -> object where it wants one, ...), then checks the coerced
arguments against the schema, and returns them: the coerced arguments are what the backend receives.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.protocols
import jsonschema.validators
import jsonschema_rs

from aperture.model.errors import InputValidationError, OutputValidationError, shorten
from aperture.model.nesting import json_too_deep, too_deep_message
from aperture.model.tool import parameters_of, schema_type_name

logger = logging.getLogger(__name__)

MAX_REPORTED_VIOLATIONS = 20
_ENUM_SHOWN = 12
_INT_LITERAL = re.compile(r"[+-]?\d+")
_JSON_TYPES: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem with the arguments: where, what was given, what was expected."""

    path: str
    message: str
    given: str | None = None
    expected: str | None = None
    allowed: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "message": self.message}
        if self.given is not None:
            out["given"] = self.given
        if self.expected is not None:
            out["expected"] = self.expected
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        return out


def json_type_of(value: Any) -> str:
    """The JSON type name of a Python value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A short rendering of a given value (never echo a megabyte back to the model)."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return shorten(text, 60)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(arguments)"


class ArgumentValidator:
    """Validates and coerces arguments for one input schema; build once per tool, reuse for every call."""

    def __init__(self, schema: Mapping[str, Any], *, tool_id: str = "", unlisted: Iterable[str] = ()) -> None:
        """`unlisted`: parameters accepted but left out of an invalid call's list of valid ones."""
        self.schema: Mapping[str, Any] = schema if isinstance(schema, Mapping) else {}
        self.tool_id = tool_id
        self._unlisted = frozenset(unlisted)
        self._properties: Mapping[str, Any] = self.schema.get("properties") or {}
        extra = self.schema.get("additionalProperties", False)
        # Unknown top-level arguments are rejected unless the schema explicitly allows them: a misspelled
        # argument is far more often a model's mistake than an intended extra.
        self._allows_extra = extra is not False or "patternProperties" in self.schema
        cls = jsonschema.validators.validator_for(self.schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(self.schema))
            self._validator: jsonschema.protocols.Validator | None = cls(self.schema)
        except jsonschema.exceptions.SchemaError as exc:
            # A broken schema from an upstream must not make its tool unusable: coerce, but do not check.
            logger.warning("tool %s has an invalid input schema, arguments go unchecked: %s", tool_id, exc.message)
            self._validator = None
        # The compiled Rust validator answers "valid?" in a microsecond; the detailed (and slower) Python
        # one only runs to explain arguments that are not.
        self._fast = _fast_validator(self.schema) if self._validator is not None else None

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Return the coerced arguments, or raise `InputValidationError` listing every problem.

        Raises:
            InputValidationError: with all violations in `details["violations"]` and a message that ends
                with the tool's valid parameters.
        """
        coerced: dict[str, Any] = self._coerce(dict(args), self.schema)
        violations = self._check(coerced)
        if violations:
            raise InputValidationError(
                self.explain(violations),
                details={"violations": [v.to_dict() for v in violations]},
                tool_id=self.tool_id or None,
            )
        return coerced

    # --- coercion -------------------------------------------------------------------------------

    def _resolve(self, schema: Any) -> Mapping[str, Any]:
        """Follow a local `$ref` (`#/$defs/X`), as pydantic writes for nested models."""
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 16:
            ref: str = schema["$ref"]
            if not ref.startswith("#/"):
                break
            target: Any = self.schema
            for part in ref[2:].split("/"):
                target = target.get(part) if isinstance(target, Mapping) else None
            if not isinstance(target, Mapping):
                break
            schema, seen = target, seen + 1
        return schema if isinstance(schema, Mapping) else {}

    def _types(self, schema: Mapping[str, Any]) -> set[str]:
        kind = schema.get("type")
        if isinstance(kind, str):
            return {kind}
        if isinstance(kind, list):
            return {str(k) for k in kind}
        types: set[str] = set()
        for combiner in ("anyOf", "oneOf"):
            for option in schema.get(combiner) or ():
                types |= self._types(self._resolve(option))
        return types

    def _coerce(self, value: Any, schema: Any, path: tuple[str | int, ...] = ()) -> Any:
        schema = self._resolve(schema)
        if not schema:
            return value
        types = self._types(schema)
        if types and not self._matches(value, types):
            if isinstance(value, str) and ({"object", "array"} & types) and json_too_deep(value):
                self._too_deep(path)
            value = _coerce_scalar(value, types)
        if isinstance(value, dict):
            props = schema.get("properties")
            if isinstance(props, Mapping):
                return {k: (self._coerce(v, props[k], (*path, k)) if k in props else v) for k, v in value.items()}
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            return [self._coerce(v, schema["items"], (*path, i)) for i, v in enumerate(value)]
        return value

    def _too_deep(self, path: tuple[str | int, ...]) -> None:
        """Refuse a JSON string nested too deep to parse safely (Python's parser recurses once per level)."""
        where = _path(path)
        violation = Violation(where, too_deep_message(f"argument '{where}' is a JSON string that"))
        raise InputValidationError(
            self.explain([violation]), details={"violations": [violation.to_dict()]}, tool_id=self.tool_id or None
        )

    @staticmethod
    def _matches(value: Any, types: set[str]) -> bool:
        kind = json_type_of(value)
        return kind in types or (kind == "integer" and "number" in types)

    # --- checking -------------------------------------------------------------------------------

    def _check(self, args: dict[str, Any]) -> list[Violation]:
        if (
            self._fast is not None
            and self._fast.is_valid(args)
            and (self._allows_extra or args.keys() <= self._properties.keys())
        ):
            return []
        violations: list[Violation] = []
        if not self._allows_extra:
            for key in args:
                if key not in self._properties:
                    close = difflib.get_close_matches(key, list(self._properties), n=1, cutoff=0.6)
                    hint = f" Did you mean '{close[0]}'?" if close else ""
                    violations.append(Violation(key, f"unknown argument '{shorten(key, 40)}'.{hint}"))
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(args), key=lambda e: [str(p) for p in e.absolute_path])
            seen: set[str] = set()
            for error in errors:
                violation = self._describe(error)
                if violation is not None and violation.message not in seen:
                    seen.add(violation.message)
                    violations.append(violation)
        return violations[:MAX_REPORTED_VIOLATIONS]

    def _missing(self, error: jsonschema.exceptions.ValidationError, path: str) -> Violation:
        """One violation per missing property (jsonschema names it only in its message)."""
        rule: Any = error.validator_value
        missing = [p for p in rule if isinstance(error.instance, dict) and p not in error.instance]
        name = next((p for p in missing if repr(p) in error.message), missing[0] if missing else "?")
        full = f"{path}.{name}" if error.absolute_path else str(name)
        props = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        expected = schema_type_name(self._resolve(props.get(name, {})))
        return Violation(full, f"missing required argument '{full}' ({expected})", expected=expected)

    def _describe(self, error: jsonschema.exceptions.ValidationError) -> Violation | None:
        path = _path(error.absolute_path)
        where = f"argument '{path}'"
        kind = error.validator
        rule: Any = error.validator_value
        if kind == "required":
            return self._missing(error, path)
        if kind == "additionalProperties" and not error.absolute_path and not self._allows_extra:
            return None  # already reported as unknown arguments, with suggestions
        if kind == "additionalProperties":
            props = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
            extras = [k for k in error.instance if k not in props] if isinstance(error.instance, dict) else []
            return Violation(path, f"{where} has unknown keys: {', '.join(map(repr, extras))}")
        given = _show(error.instance)
        if kind == "type":
            expected = (
                schema_type_name(error.schema) if isinstance(error.schema, Mapping) else str(error.validator_value)
            )
            got = json_type_of(error.instance)
            return Violation(path, f"{where} must be {expected}; got {got} {given}", given=given, expected=expected)
        if kind == "enum":
            allowed = tuple(rule)
            choices = ", ".join(_show(v) for v in allowed[:_ENUM_SHOWN])
            if len(allowed) > _ENUM_SHOWN:
                choices += f", … ({len(allowed)} values, all listed below)"
            return Violation(path, f"{where} must be one of {choices}; got {given}", given=given, allowed=allowed)
        if kind == "const":
            return Violation(path, f"{where} must be {_show(error.validator_value)}; got {given}", given=given)
        return Violation(path, f"{where}: {shorten(error.message, 200)}", given=given)

    def explain(self, violations: list[Violation]) -> str:
        """The message a model reads: every problem, then the tool's valid parameters."""
        count = len(violations)
        title = f"tool '{self.tool_id}'" if self.tool_id else "the tool"
        lines = [f"Invalid arguments for {title} ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"- {v.message}" for v in violations]
        params = [p for p in parameters_of(self.schema) if p.name not in self._unlisted]
        if params:
            lines.append("Valid parameters:")
            lines += [p.render() for p in params]
        else:
            lines.append("This tool takes no parameters: pass {}.")
        return "\n".join(lines)


def _fast_validator(schema: Mapping[str, Any]) -> Any:
    try:
        return jsonschema_rs.validator_for(dict(schema))
    except (ValueError, jsonschema_rs.ValidationError):
        return None


def _coerce_scalar(value: Any, types: set[str]) -> Any:
    """Apply the safe coercions toward one of `types`; return `value` unchanged when none applies."""
    if isinstance(value, str):
        text = value.strip()
        if "integer" in types and _INT_LITERAL.fullmatch(text):
            return int(text)
        if "number" in types:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return int(text) if _INT_LITERAL.fullmatch(text) else number
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if ("object" in types and text.startswith("{")) or ("array" in types and text.startswith("[")):
            try:
                parsed = json.loads(text)
            except ValueError:
                return value
            if json_type_of(parsed) in types:
                return parsed
        return value
    if isinstance(value, float) and "integer" in types and value.is_integer():
        return int(value)
    if "string" in types and isinstance(value, bool):
        return "true" if value else "false"
    if "string" in types and isinstance(value, int | float):
        return str(value)
    return value


class OutputValidator:
    """Checks a tool's structured result against its output schema; build once per tool."""

    def __init__(self, schema: Mapping[str, Any], *, tool_id: str = "") -> None:
        self.tool_id = tool_id
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
            self._validator: jsonschema.protocols.Validator | None = cls(schema)
        except jsonschema.exceptions.SchemaError as exc:
            logger.warning("tool %s has an invalid output schema, results go unchecked: %s", tool_id, exc.message)
            self._validator = None
        # As for arguments: the compiled check passes a valid result in microseconds (a gRPC response of five
        # fields: 59 -> 0.4 us); the Python validator only runs to explain one that is not.
        self._fast = _fast_validator(schema) if self._validator is not None else None

    def check(self, value: Any) -> None:
        """Raise `OutputValidationError` when `value` does not match the schema."""
        if self._validator is None or (self._fast is not None and self._fast.is_valid(value)):
            return
        errors = list(self._validator.iter_errors(value))[:5]
        if not errors:
            return
        problems = "; ".join(f"{_path(e.absolute_path)}: {shorten(e.message, 160)}" for e in errors)
        raise OutputValidationError(
            f"Tool '{self.tool_id}' returned a result that does not match its output schema: {problems}. "
            "This is a fault of the tool, not of your arguments; report it or use another tool.",
            details={"problems": [{"path": _path(e.absolute_path), "message": e.message} for e in errors]},
            tool_id=self.tool_id or None,
        )

    def check_missing(self) -> None:
        """Raise `OutputValidationError`: the tool declares an output schema but returned no structured content."""
        raise OutputValidationError(
            f"Tool '{self.tool_id}' declares an output schema but returned no structured content. "
            "This is a fault of the tool, not of your arguments.",
            tool_id=self.tool_id or None,
        )
