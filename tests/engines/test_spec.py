"""Spec helpers: JSON-decoded values read as typed values, defaults when absent, a clear error when wrong."""

from __future__ import annotations

from typing import Any

import pytest

from aperture.engines import (
    SpecError,
    get_bool,
    get_int,
    get_str,
    get_str_list,
    get_str_map,
    require_bool,
    require_int,
    require_str,
    require_str_list,
    require_str_map,
)
from aperture.model import InputValidationError

SPEC: dict[str, Any] = {
    "name": "app",
    "tags": ["a", "b"],
    "labels": {"tier": "web"},
    "enabled": True,
    "workers": 4,
    "retries": 3.0,
    "ratio": 2.5,
    "nothing": None,
}


def test_values_of_the_right_type_come_back_typed() -> None:
    assert get_str(SPEC, "name") == "app"
    assert get_str_list(SPEC, "tags") == ["a", "b"]
    assert get_str_map(SPEC, "labels") == {"tier": "web"}
    assert get_bool(SPEC, "enabled") is True
    assert get_int(SPEC, "workers") == 4
    assert require_str(SPEC, "name") == "app"
    assert require_str_list(SPEC, "tags") == ["a", "b"]
    assert require_str_map(SPEC, "labels") == {"tier": "web"}
    assert require_bool(SPEC, "enabled") is True
    assert require_int(SPEC, "workers") == 4


def test_a_whole_float_is_an_integer_but_a_fraction_is_not() -> None:
    assert get_int(SPEC, "retries") == 3
    assert isinstance(require_int(SPEC, "retries"), int)
    with pytest.raises(SpecError, match=r"spec.ratio must be an integer, got float 2.5"):
        get_int(SPEC, "ratio")


def test_absent_or_null_keys_give_the_default() -> None:
    assert get_str(SPEC, "missing") is None
    assert get_str(SPEC, "missing", "dflt") == "dflt"
    assert get_str(SPEC, "nothing", "dflt") == "dflt"
    assert get_str_list(SPEC, "missing") == []
    assert get_str_list(SPEC, "missing", ["x"]) == ["x"]
    assert get_str_map(SPEC, "missing", {"k": "v"}) == {"k": "v"}
    assert get_bool(SPEC, "missing") is False
    assert get_bool(SPEC, "missing", True) is True
    assert get_int(SPEC, "missing", 30) == 30
    assert get_str(None, "name", "x") == "x"  # no spec at all


def test_defaults_are_copies() -> None:
    default = ["x"]
    got = get_str_list({}, "k", default)
    got.append("y")
    assert default == ["x"]


@pytest.mark.parametrize(
    ("read", "key", "expected"),
    [
        (get_str, "workers", "a string"),
        (get_str_list, "name", "a list of strings"),
        (get_str_list, "labels", "a list of strings"),
        (get_str_map, "tags", "an object of string values"),
        (get_bool, "name", "true or false"),
        (get_int, "enabled", "an integer"),  # a boolean is not an integer, although Python thinks so
        (get_int, "name", "an integer"),
    ],
)
def test_a_wrong_type_is_an_error_naming_the_key_never_a_silent_default(read: Any, key: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        read(SPEC, key)
    assert f"spec.{key} must be {expected}" in caught.value.message
    assert caught.value.details["violations"][0]["path"] == f"spec.{key}"
    assert isinstance(caught.value, InputValidationError)  # reported as the caller's input to fix


def test_mixed_lists_and_maps_are_rejected() -> None:
    with pytest.raises(SpecError, match="a list of strings"):
        get_str_list({"tags": ["a", 1]}, "tags")
    with pytest.raises(SpecError, match="string values"):
        get_str_map({"labels": {"a": 1}}, "labels")


@pytest.mark.parametrize(
    "require", [require_str, require_str_list, require_str_map, require_bool, require_int], ids=lambda f: f.__name__
)
def test_require_names_the_missing_key(require: Any) -> None:
    with pytest.raises(SpecError, match=r"spec.absent is required .* but missing"):
        require(SPEC, "absent")
    with pytest.raises(SpecError, match="missing"):
        require(SPEC, "nothing")  # null counts as missing


def test_a_spec_that_is_not_an_object_is_reported() -> None:
    with pytest.raises(SpecError, match="spec must be an object, got list"):
        get_str(["a"], "name")  # type: ignore[arg-type]
