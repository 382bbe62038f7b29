"""The tool definition every layer shares."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aperture.model.ids import ToolId

EMPTY_INPUT_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n\s*\n")
SHORT_DESCRIPTION_LIMIT = 160
NAMESPACE_DESCRIPTION_LIMIT = 500
"""Most characters of a tool's `namespace_description` (a server's instructions can run to pages)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolAnnotations:
    """Behaviour hints, as MCP defines them (hints, not guarantees)."""

    title: str | None = None
    read_only: bool | None = None
    destructive: bool | None = None
    idempotent: bool | None = None
    open_world: bool | None = None

    @classmethod
    def from_dict(cls, wire: Mapping[str, Any]) -> ToolAnnotations:
        """Annotations from MCP's wire names (the inverse of `to_dict`)."""
        return cls(
            title=wire.get("title"),
            read_only=wire.get("readOnlyHint"),
            destructive=wire.get("destructiveHint"),
            idempotent=wire.get("idempotentHint"),
            open_world=wire.get("openWorldHint"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The annotations in MCP's wire names, leaving out what is unset."""
        wire = {
            "title": self.title,
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }
        return {k: v for k, v in wire.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolExample:
    """One worked call: what it is for, the arguments, and optionally what came back."""

    description: str
    args: Mapping[str, Any]
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description, "args": dict(self.args)}
        if self.result is not None:
            out["result"] = self.result
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A tool as the gateway knows it, whichever backend provides it.

    `input_schema` and `output_schema` are JSON Schema objects; `name` is the backend's own name for
    the tool and `id` adds the namespace (the backend's configured name).
    """

    id: ToolId
    description: str = ""
    title: str | None = None
    input_schema: Mapping[str, Any] = field(default_factory=lambda: dict(EMPTY_INPUT_SCHEMA))
    output_schema: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()
    annotations: ToolAnnotations = field(default_factory=ToolAnnotations)
    examples: tuple[ToolExample, ...] = ()
    backend_kind: str = ""
    cache_ttl: float | None = None
    """Seconds a result may be reused, as the tool's definition declares (None: not declared); the ops layer's
    cache reads it."""
    instructions: str = ""
    """Longer guidance than the description, shown only at detail level `full` (an instruction skill's body)."""
    resources: tuple[str, ...] = ()
    """URIs of resources that belong with the tool (an instruction skill's files), listed at level `full`."""
    namespace_description: str = ""
    """What the tool's backend says about itself (its server's instructions or title, a description in its
    configuration): indexed for search as part of the namespace, and pinned with the tool by integrity."""

    @property
    def name(self) -> str:
        return self.id.name

    @property
    def namespace(self) -> str:
        return self.id.namespace

    @property
    def version(self) -> str | None:
        return self.id.version

    @property
    def key(self) -> str:
        """`namespace:name`: the id the catalog and callers use."""
        return self.id.key

    @property
    def short_description(self) -> str:
        """The first sentence of the description, cut to a length that keeps search results cheap."""
        return short_description(self.description)

    def parameters(self) -> list[ParameterInfo]:
        """The top-level parameters of the input schema, in schema order."""
        return parameters_of(self.input_schema)


@dataclass(frozen=True, slots=True)
class ParameterInfo:
    """One top-level parameter of a tool, as error messages and docs present it."""

    name: str
    type: str
    required: bool
    description: str
    enum: tuple[Any, ...] | None = None

    def render(self) -> str:
        """One line: `- name (integer, required): description. One of: ...`."""
        flag = "required" if self.required else "optional"
        line = f"- {self.name} ({self.type}, {flag})"
        if self.description:
            line += f": {self.description}"
        if self.enum:
            line += f" One of: {', '.join(repr(v) for v in self.enum)}."
        return line


def short_description(text: str, limit: int = SHORT_DESCRIPTION_LIMIT) -> str:
    """The first sentence or paragraph of `text`, at most `limit` characters."""
    text = text.strip()
    first = _first_sentence(text).strip()
    first = " ".join(first.split())
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first


def namespace_text(*parts: str | None, limit: int | None = NAMESPACE_DESCRIPTION_LIMIT) -> str:
    """What a backend says about itself as one line: the non-empty `parts` (a title, a description, instructions),
    whitespace collapsed, each left out when an earlier one already says it, joined into sentences and cut at a
    word to at most `limit` characters (None: not cut; the registry cuts once secrets are out). Applied to its
    own answer it changes nothing.

    Example:
        ```python
        namespace_text("Acme Billing", "Invoices and refunds.")  # 'Acme Billing. Invoices and refunds.'
        ```
    """
    text = ""
    for part in parts:
        part = " ".join((part or "").split())
        if not part or part.casefold() in text.casefold():
            continue
        if text:
            text += " " if text[-1] in ".!?:;…" else ". "
        text += part
    if limit is None or len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:  # not inside a word
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


# Words ending in a period that do not end a sentence ("with a hash function, e.g. sha256").
_ABBREVIATIONS = frozenset(
    "e.g. i.e. cf. vs. viz. approx. incl. esp. resp. al. ca. no. nos. fig. eq. dr. mr. mrs. ms. st. jr. sr.".split()
)


def _first_sentence(text: str) -> str:
    """`text` up to the end of its first sentence or paragraph; a period after an abbreviation or an
    initial does not end a sentence, nor does "etc." before a lowercase word."""
    for end in _SENTENCE_END.finditer(text):
        before = text[: end.start()]
        if end.group().count("\n") < 2 and before.endswith(".") and _abbreviated(before, text[end.end() :]):
            continue
        return before
    return text


def _abbreviated(before: str, after: str) -> bool:
    word = before.rsplit(None, 1)[-1].lstrip("([{\"'").lower()
    if word in _ABBREVIATIONS or (len(word) == 2 and word[0].isalpha()):  # an abbreviation, or an initial
        return True
    return word == "etc." and not after.lstrip()[:1].isupper()


def schema_type_name(schema: Mapping[str, Any]) -> str:
    """A short human name for a JSON Schema's type: `integer`, `array of string`, `string | null`."""
    if not isinstance(schema, Mapping):
        return "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return f"array of {schema_type_name(schema['items'])}"
    if kind is None:
        for combiner in ("anyOf", "oneOf"):
            options = schema.get(combiner)
            if isinstance(options, list) and options:
                return " | ".join(schema_type_name(o) for o in options)
        if "enum" in schema:
            return "enum"
        return "any"
    return str(kind)


def parameters_of(schema: Mapping[str, Any]) -> list[ParameterInfo]:
    """List the top-level parameters of an object schema."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = set(schema.get("required") or ())
    out = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, Mapping) else {}
        enum = prop.get("enum")
        out.append(
            ParameterInfo(
                name=name,
                type=schema_type_name(prop),
                required=name in required,
                description=" ".join(str(prop.get("description", "")).split()),
                enum=tuple(enum) if isinstance(enum, list) else None,
            )
        )
    return out
