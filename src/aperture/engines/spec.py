"""Typed reads from a JSON-decoded `spec`: defaults when a key is absent, a clear error when it is wrong.

JSON decoding gives `list[Any]` for string lists, `dict[str, Any]` for string maps and, through some
clients, `3.0` for an integer; these helpers accept those forms. A value of the wrong type is never
silently replaced by the default: the caller (often a model) learns which key to fix and how.

    pattern = get_str(spec, "pattern", "tests/")
    markers = get_str_list(spec, "markers")          # [] when absent
    workers = require_int(spec, "workers")           # SpecError when absent or not an integer
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aperture.model import InputValidationError
from aperture.model.errors import shorten


class SpecError(InputValidationError):
    """A `spec` value that is missing or of the wrong type."""


def _fail(key: str, expected: str, value: Any) -> SpecError:
    given = type(value).__name__ if value is not None else "null"
    return SpecError(
        f"spec.{key} must be {expected}, got {given} {shorten(repr(value), 60)}. Fix spec.{key} and call again.",
        details={"violations": [{"path": f"spec.{key}", "expected": expected, "given": given}]},
    )


def _missing(key: str, expected: str) -> SpecError:
    return SpecError(
        f"spec.{key} is required ({expected}) but missing. Add it to spec and call again.",
        details={"violations": [{"path": f"spec.{key}", "expected": expected, "message": "missing"}]},
    )


def _as_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _fail(key, "a string", value)


def _as_str_list(key: str, value: Any) -> list[str]:
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _fail(key, "a list of strings", value)


def _as_str_map(key: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    raise _fail(key, "an object of string values", value)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(key, "true or false", value)


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON numbers may arrive as floats: 3.0 is the integer 3
    raise _fail(key, "an integer", value)


def _get(spec: Mapping[str, Any] | None, key: str) -> Any:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise SpecError(f"spec must be an object, got {type(spec).__name__}. Pass spec as a JSON object.")
    return spec.get(key)


def get_str(spec: Mapping[str, Any] | None, key: str, default: str | None = None) -> str | None:
    """`spec[key]` as a string; `default` when absent or null.

    Raises:
        SpecError: when present but not a string.
    """
    value = _get(spec, key)
    return default if value is None else _as_str(key, value)


def get_str_list(spec: Mapping[str, Any] | None, key: str, default: list[str] | None = None) -> list[str]:
    """`spec[key]` as a list of strings; `default` (or `[]`) when absent."""
    value = _get(spec, key)
    return list(default or []) if value is None else _as_str_list(key, value)


def get_str_map(spec: Mapping[str, Any] | None, key: str, default: Mapping[str, str] | None = None) -> dict[str, str]:
    """`spec[key]` as a map of strings; `default` (or `{}`) when absent."""
    value = _get(spec, key)
    return dict(default or {}) if value is None else _as_str_map(key, value)


def get_bool(spec: Mapping[str, Any] | None, key: str, default: bool = False) -> bool:
    """`spec[key]` as a boolean; `default` when absent."""
    value = _get(spec, key)
    return default if value is None else _as_bool(key, value)


def get_int(spec: Mapping[str, Any] | None, key: str, default: int | None = None) -> int | None:
    """`spec[key]` as an integer (a float without a fraction counts); `default` when absent."""
    value = _get(spec, key)
    return default if value is None else _as_int(key, value)


def require_str(spec: Mapping[str, Any] | None, key: str) -> str:
    """`spec[key]` as a string. Raises `SpecError` when missing or not a string."""
    value = _get(spec, key)
    if value is None:
        raise _missing(key, "a string")
    return _as_str(key, value)


def require_str_list(spec: Mapping[str, Any] | None, key: str) -> list[str]:
    """`spec[key]` as a list of strings. Raises `SpecError` when missing or of another type."""
    value = _get(spec, key)
    if value is None:
        raise _missing(key, "a list of strings")
    return _as_str_list(key, value)


def require_str_map(spec: Mapping[str, Any] | None, key: str) -> dict[str, str]:
    """`spec[key]` as a map of strings. Raises `SpecError` when missing or of another type."""
    value = _get(spec, key)
    if value is None:
        raise _missing(key, "an object of string values")
    return _as_str_map(key, value)


def require_bool(spec: Mapping[str, Any] | None, key: str) -> bool:
    """`spec[key]` as a boolean. Raises `SpecError` when missing or of another type."""
    value = _get(spec, key)
    if value is None:
        raise _missing(key, "true or false")
    return _as_bool(key, value)


def require_int(spec: Mapping[str, Any] | None, key: str) -> int:
    """`spec[key]` as an integer. Raises `SpecError` when missing or not an integer."""
    value = _get(spec, key)
    if value is None:
        raise _missing(key, "an integer")
    return _as_int(key, value)
