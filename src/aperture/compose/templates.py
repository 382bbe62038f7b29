"""Templates: JSON values whose strings hold `{{ expression }}` slots, the expressions in JMESPath.

A string that is exactly one slot, `"{{ steps.fetch.items }}"`, becomes the expression's value with its type (a
list stays a list, a number a number); a slot among other text, `"Hello {{ inputs.name }}"`, is written into the
text (strings as they are, anything else as compact JSON). Dictionaries and lists are templates all the way down.

Why JMESPath: it is a query language over JSON data and nothing more. An expression cannot run code, reach an
attribute or a module, read a file or loop without end; it gets JSON in and gives JSON out, the same answer every
time, with one specification and compliance suite behind every implementation (the `jmespath` package is the AWS
CLI's). A sandboxed Jinja2 renders text (typed values need a second parse), and its sandbox guards a language that
can call methods, which is a larger surface to keep safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

MAX_EXPRESSION = 2_000
"""Characters one expression may have: enough for any real query, and bounded parsing work."""
MAX_TEXT = 1_000_000
"""Characters a string may grow to when its slots are filled in (a slot over a large result, repeated, must not
take the gateway's memory)."""

_SLOT = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)

Path = tuple[str, ...]
"""What an expression reads from the data it is given: `("inputs", "name")`, `("steps", "fetch")`, `()` for `@`."""


class ExpressionError(ValueError):
    """A template slot that does not parse, names something it may not read, or fails when evaluated.

    Attributes:
        reason: what is wrong and how to fix it.
        where: the path of the value inside the template (`text`, `items[2]`), empty at its top.
    """

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where


@dataclass(frozen=True, slots=True)
class Expression:
    """One compiled JMESPath expression and the paths it reads from its data."""

    source: str
    compiled: jmespath.parser.ParsedResult
    reads: tuple[Path, ...]

    @classmethod
    def parse(cls, source: str) -> Expression:
        """Compile `source` (with or without the `{{ }}` around it).

        Raises:
            ExpressionError: it is empty, too long, or not JMESPath (the message quotes the parser).
        """
        text = source.strip()
        slot = _SLOT.fullmatch(text)
        if slot is not None:
            text = slot.group(1).strip()
        if not text:
            raise ExpressionError("the expression is empty; write a JMESPath query such as inputs.name")
        if len(text) > MAX_EXPRESSION:
            raise ExpressionError(f"the expression is {len(text)} characters long; at most {MAX_EXPRESSION}")
        try:
            compiled = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            raise ExpressionError(f"{text!r} is not a valid JMESPath expression: {_first_line(exc)}") from None
        except RecursionError:
            raise ExpressionError(f"the expression {text[:60]!r}… nests too deeply") from None
        reads: list[Path] = []
        _reads(compiled.parsed, reads)
        return cls(text, compiled, tuple(dict.fromkeys(reads)))

    def evaluate(self, data: Mapping[str, Any]) -> Any:
        """The expression's value over `data`.

        Raises:
            ExpressionError: a function got the wrong type of value (`length(5)`), or similar.
        """
        try:
            return self.compiled.search(data)
        except jmespath.exceptions.JMESPathError as exc:
            raise ExpressionError(f"{{{{ {self.source} }}}} failed: {_first_line(exc)}") from None
        except RecursionError:
            raise ExpressionError(f"{{{{ {self.source} }}}} failed: the data nests too deeply") from None

    def roots(self) -> set[str]:
        """The top-level names it reads (`inputs`, `steps`, ...); `@` reads everything and counts as `""`."""
        return {path[0] if path else "" for path in self.reads}


def truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, and empty strings, lists and objects are false; everything else (0 too) true."""
    return not (value is None or value is False or (isinstance(value, str | list | dict) and not value))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _chain(node: Mapping[str, Any]) -> Path | None:
    """The path a plain chain of fields reads (`a.b.c`, `@.a`), else None."""
    kind = node.get("type")
    if kind == "field":
        return (str(node["value"]),)
    if kind == "current":
        return ()
    if kind == "subexpression":
        children = node["children"]
        path = _chain(children[0])
        if path is None:
            return None
        for child in children[1:]:
            if child.get("type") == "field":
                path = (*path, str(child["value"]))
                continue
            while child.get("type") in _LEFT_ONLY:  # `steps.a[0]`: the index applies to `a`, read relatively
                child = child["children"][0]
            if child.get("type") in ("field", "subexpression"):
                path = (*path, *(_chain(child) or ()))
            break
        return path
    return None


_LEFT_ONLY = frozenset({"index_expression", "projection", "value_projection", "filter_projection", "flatten", "pipe"})
_ALL_CHILDREN = frozenset(
    {
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "function_expression",
        "comparator",
        "and_expression",
        "or_expression",
        "not_expression",
    }
)


def _reads(node: Any, out: list[Path]) -> None:
    """Collect the paths `node`, evaluated against the template's data, reads from that data.

    The right-hand sides of projections, filters and pipes, and `&expression` arguments, are evaluated against
    the elements the left-hand side gives, so they read nothing from the data itself.
    """
    if not isinstance(node, Mapping):
        return
    kind = node.get("type")
    children = node.get("children") or []
    if kind in ("field", "current", "subexpression"):
        path = _chain(node)
        if path is not None:
            out.append(path)
            return
        _reads(children[0], out)
    elif kind in _LEFT_ONLY:
        _reads(children[0], out)
    elif kind in _ALL_CHILDREN:
        for child in children:
            _reads(child, out)
    # literal, expref, identity, index, slice: nothing from the data


# --- templates --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Whole:
    expression: Expression


@dataclass(frozen=True, slots=True)
class _Text:
    parts: tuple[str | Expression, ...]


@dataclass(frozen=True, slots=True)
class _Object:
    items: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True, slots=True)
class _List:
    items: tuple[_Node, ...]


_Node = _Literal | _Whole | _Text | _Object | _List


@dataclass(frozen=True, slots=True)
class Template:
    """A JSON value with `{{ }}` slots in its strings, compiled once and rendered per call.

    Example:
        ```python
        template = Template.compile({"text": "{{ inputs.title }}", "note": "by {{ inputs.author }}"})
        template.render({"inputs": {"title": "Hi", "author": "Ada"}})  # {"text": "Hi", "note": "by Ada"}
        ```
    """

    source: Any
    _root: _Node
    expressions: tuple[tuple[str, Expression], ...]
    """Every slot, with where it is in the value (`text`, `items[0]`)."""

    @classmethod
    def compile(cls, value: Any) -> Template:
        """Compile every slot of `value` (a JSON value).

        Raises:
            ExpressionError: for the first slot that does not parse, with where it is.
        """
        found: list[tuple[str, Expression]] = []
        root = _compile(value, "", found)
        return cls(value, root, tuple(found))

    @property
    def is_literal(self) -> bool:
        """True when it has no slot: it renders to its source."""
        return not self.expressions

    def reads(self) -> list[tuple[str, Path]]:
        """`(where, path)` for every path any slot reads."""
        return [(where, path) for where, expression in self.expressions for path in expression.reads]

    def render(self, data: Mapping[str, Any]) -> Any:
        """The value with every slot filled in from `data`.

        Raises:
            ExpressionError: an expression failed, or filled text grew past `MAX_TEXT`; with where.
        """
        return _render(self._root, data, None, "")

    def render_known(self, data: Mapping[str, Any], known: Collection[str]) -> Any:
        """The value with the slots that read only the top-level names in `known` filled in; any other slot stays
        as its `{{ }}` text (a plan shows what is known before the steps run)."""

        def ready(expression: Expression) -> bool:
            return expression.roots() <= set(known)

        return _render(self._root, data, ready, "")


def _compile(value: Any, where: str, found: list[tuple[str, Expression]]) -> _Node:
    if isinstance(value, str):
        slots = list(_SLOT.finditer(value))
        if not slots:
            return _Literal(value)
        if len(slots) == 1 and slots[0].group(0) == value.strip():
            return _Whole(_expression(slots[0].group(1), where, found))
        parts: list[str | Expression] = []
        end = 0
        for slot in slots:
            if slot.start() > end:
                parts.append(value[end : slot.start()])
            parts.append(_expression(slot.group(1), where, found))
            end = slot.end()
        if end < len(value):
            parts.append(value[end:])
        return _Text(tuple(parts))
    if isinstance(value, Mapping):
        return _Object(tuple((str(k), _compile(v, _join(where, str(k)), found)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return _List(tuple(_compile(v, f"{where}[{i}]", found) for i, v in enumerate(value)))
    return _Literal(value)


def _expression(text: str, where: str, found: list[tuple[str, Expression]]) -> Expression:
    try:
        expression = Expression.parse(text)
    except ExpressionError as exc:
        raise ExpressionError(exc.reason, where) from None
    found.append((where, expression))
    return expression


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _render(node: _Node, data: Mapping[str, Any], ready: Callable[[Expression], bool] | None, where: str) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Whole):
        if ready is not None and not ready(node.expression):
            return f"{{{{ {node.expression.source} }}}}"
        return _evaluate(node.expression, data, where)
    if isinstance(node, _Text):
        pieces: list[str] = []
        size = 0
        for part in node.parts:
            if isinstance(part, str):
                piece = part
            elif ready is not None and not ready(part):
                piece = f"{{{{ {part.source} }}}}"
            else:
                piece = as_text(_evaluate(part, data, where))
            size += len(piece)
            if size > MAX_TEXT:
                raise ExpressionError(
                    f"the text grows past {MAX_TEXT:,} characters when its slots are filled in; select less "
                    "(for example a field, or a slice such as [:10])",
                    where,
                )
            pieces.append(piece)
        return "".join(pieces)
    if isinstance(node, _Object):
        return {key: _render(child, data, ready, _join(where, key)) for key, child in node.items}
    return [_render(child, data, ready, f"{where}[{i}]") for i, child in enumerate(node.items)]


def _evaluate(expression: Expression, data: Mapping[str, Any], where: str) -> Any:
    try:
        return expression.evaluate(data)
    except ExpressionError as exc:
        raise ExpressionError(exc.reason, where) from None


def as_text(value: Any) -> str:
    """How a value reads inside text: a string as it is, anything else as compact JSON (`null`, `3`, `[1,2]`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def check_reads(
    reads: Sequence[tuple[str, Path]], allowed: Mapping[str, Callable[[Path], str | None]], where: str = ""
) -> list[ExpressionError]:
    """Check what slots read against the names they may read: `allowed` maps each top-level name to a check of the
    rest of the path (None when fine, else the reason). A path under another name gets an error listing the names.
    """
    problems: list[ExpressionError] = []
    names = ", ".join(sorted(allowed))
    for slot, path in reads:
        at = _join(where, slot) if slot else where
        if not path:
            continue  # `@` reads the whole data: nothing to check by name
        check = allowed.get(path[0])
        reason = (
            f"'{path[0]}' is not something a template can read here; it sees {names}" if check is None else check(path)
        )
        if reason is not None:
            problems.append(ExpressionError(reason, at))
    return problems
