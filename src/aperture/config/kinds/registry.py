"""The registry of backend kinds: each kind (mcp, python, ...) is one module that declares its configuration
model and a factory, and one entry here. The configuration's `backends:` union, the list of kinds and the
gateway's `build_backend` are derived from it (docs/backend-kinds.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Discriminator, Field, GetCoreSchemaHandler, field_validator
from pydantic_core import CoreSchema

from aperture.execution import Backend, IntegrityGuard
from aperture.model import ConfigError, Redactor
from aperture.model.errors import InvalidToolIdError
from aperture.model.ids import validate_part

if TYPE_CHECKING:
    from aperture.config.schema import Config


class Section(BaseModel):
    """A section of the configuration file: unknown keys are errors, values do not change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def backend_name(value: str) -> str:
    """`value`, checked as a backend name (it becomes the namespace of tool ids)."""
    try:
        return validate_part(value, "backend name")
    except InvalidToolIdError as exc:
        raise ValueError(exc.details["reason"] + " (the name becomes the namespace of tool ids)") from None


class BackendSettings(Section):
    """What every backend entry has: a `name`, the `kind` that picks its model (a `Literal` in each kind's
    model), a `timeout` (each kind declares it, with its own default) and an optional `description`."""

    name: str = Field(description="Backend name; becomes the namespace of its tools.")
    kind: str
    description: str = Field(
        "",
        description="What this backend is for, in a sentence or two: searched with its namespace, in place of what "
        "the backend says about itself (an MCP server's instructions and title, an agent card's description).",
    )

    if TYPE_CHECKING:  # declared by each kind, where its default and place among the keys are its own
        timeout: float | None

    _valid_name = field_validator("name")(classmethod(lambda cls, v: backend_name(v)))


S = TypeVar("S", bound=BackendSettings)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildContext:
    """What a kind's factory gets besides its own entry: the whole configuration and the gateway's services."""

    config: Config
    guard: IntegrityGuard | None = None
    """The integrity guard (a lazy upstream lists the tools approved last time)."""
    redactor: Redactor | None = None
    """Learns the credentials a backend finds as it loads (a capability file's), to take them out of output."""

    def resolve(self, path: str) -> Path:
        """A path from the configuration file, resolved against the file's directory."""
        return self.config.resolve(path)


@dataclass(frozen=True, slots=True)
class BackendKind(Generic[S]):
    """One kind of backend: the name `kind:` gives it, its configuration model, and the factory that makes a
    backend (not yet started) from an entry of that model."""

    name: str
    model: type[S]
    build: Callable[[S, BuildContext], Backend]


_kinds: dict[str, BackendKind[Any]] = {}
_listeners: list[Callable[[], None]] = []


def register_kind(kind: BackendKind[Any]) -> None:
    """Add `kind`: from now on the configuration accepts it and the gateway builds it.

    Raises:
        ValueError: the model's `kind` field is not `Literal[<name>]`, it lacks a `timeout`, or another kind
            already has the name.
    """
    field = kind.model.model_fields.get("kind")
    annotation = field.annotation if field is not None else None
    if get_origin(annotation) is not Literal or get_args(annotation) != (kind.name,):
        raise ValueError(
            f"backend kind '{kind.name}': {kind.model.__qualname__} must declare kind: Literal['{kind.name}'] "
            "(the configuration picks the model by it)"
        )
    if "timeout" not in kind.model.model_fields:
        raise ValueError(f"backend kind '{kind.name}': {kind.model.__qualname__} must declare 'timeout'")
    existing = _kinds.get(kind.name)
    if existing is not None and existing != kind:
        raise ValueError(
            f"backend kind '{kind.name}' is already registered (with {existing.model.__qualname__}); "
            "choose another name, or unregister it first"
        )
    _kinds[kind.name] = kind
    _changed()


def unregister_kind(name: str) -> None:
    """Remove the kind `name` (a test's own kind, say); entries of that kind are then refused.

    Raises:
        ValueError: no kind has that name.
    """
    if _kinds.pop(name, None) is None:
        raise ValueError(f"no backend kind '{name}' is registered; the kinds are: {', '.join(backend_kinds())}")
    _changed()


def backend_kinds() -> tuple[str, ...]:
    """The names of the registered kinds, in the order they were registered."""
    return tuple(_kinds)


def kind_named(name: str) -> BackendKind[Any]:
    """The kind `name`.

    Raises:
        ConfigError: no kind has that name (it lists the kinds there are).
    """
    kind = _kinds.get(name)
    if kind is None:
        raise ConfigError(f"unknown backend kind '{name}'; the kinds are: {', '.join(backend_kinds())}")
    return kind


def on_kinds_changed(listener: Callable[[], None]) -> None:
    """Call `listener()` whenever a kind is registered or removed (the configuration schema rebuilds then)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


class _ByKind:
    """Validates a backend entry as the model its `kind` names, among the kinds registered when the schema is
    built (a discriminated union, rebuilt when the kinds change)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        models = tuple(kind.model for kind in _kinds.values())
        if len(models) < 2:  # (a discriminated union needs two members)
            return handler.generate_schema(models[0] if models else BackendSettings)
        return handler.generate_schema(Annotated[Union[models], Discriminator("kind")])  # noqa: UP007


BackendConfig = Annotated[BackendSettings, _ByKind()]
"""A `backends:` entry: the model of its kind."""
