"""Tool identifiers: `namespace:name` with an optional `:version`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aperture.model.errors import InvalidToolIdError

_PART = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
MAX_PART_LENGTH = 128
SEPARATOR = ":"


def validate_part(value: str, what: str) -> str:
    """Check one part of a tool id (namespace, name or version).

    Raises:
        InvalidToolIdError: naming the part, what was wrong and the allowed form.
    """
    if not value:
        raise InvalidToolIdError(value, f"the {what} is empty")
    if len(value) > MAX_PART_LENGTH:
        raise InvalidToolIdError(value, f"the {what} is {len(value)} characters long; at most {MAX_PART_LENGTH}")
    if not _PART.fullmatch(value):
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))})
        shown = "".join(bad[:10])
        raise InvalidToolIdError(value, f"the {what} contains characters outside [A-Za-z0-9_.-]: {shown!r}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class ToolId:
    """The identity of a tool across the whole gateway: `namespace:name[:version]`.

    The namespace is the name of the backend the tool comes from.
    """

    namespace: str
    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        validate_part(self.namespace, "namespace")
        validate_part(self.name, "name")
        if self.version is not None:
            validate_part(self.version, "version")

    @staticmethod
    def is_bare_name(text: object) -> bool:
        """Whether `text` is a well-formed tool name without its namespace (`hash_text`): callers answer it
        with the ids that have that name rather than with a parse error."""
        if not isinstance(text, str) or SEPARATOR in text:
            return False
        try:
            validate_part(text, "name")
        except InvalidToolIdError:
            return False
        return True

    @classmethod
    def parse(cls, text: str) -> ToolId:
        """Parse `namespace:name` or `namespace:name:version`.

        Raises:
            InvalidToolIdError: with a message that says which part is wrong and shows the expected form.
        """
        if not isinstance(text, str):
            raise InvalidToolIdError(repr(text), f"a tool id must be a string, got {type(text).__name__}")
        if len(text) > 3 * MAX_PART_LENGTH + 2:
            raise InvalidToolIdError(
                text, f"it is {len(text)} characters long; ids are at most {3 * MAX_PART_LENGTH + 2}"
            )
        parts = text.split(SEPARATOR)
        if len(parts) == 1:
            raise InvalidToolIdError(text, "it has no namespace; ids look like 'namespace:name'")
        if len(parts) > 3:
            raise InvalidToolIdError(text, f"it has {len(parts)} parts separated by ':'; expected 2 or 3")
        version = parts[2] if len(parts) == 3 else None
        return cls(parts[0], parts[1], version)

    @property
    def key(self) -> str:
        """The id without its version: what the catalog is keyed by."""
        return f"{self.namespace}{SEPARATOR}{self.name}"

    def __str__(self) -> str:
        return self.key if self.version is None else f"{self.key}{SEPARATOR}{self.version}"
