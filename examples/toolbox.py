"""The example catalog: everyday offline tools, served by a `python` backend (see aperture.yaml)."""

from __future__ import annotations

import ast
import base64
import binascii
import calendar
import hashlib
import math
import operator
import re
import statistics
import unicodedata
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from aperture import tool

# --- arithmetic --------------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ValueError("exponent too large (at most 1000)")
        return float(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return float(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        return float(_FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args)))
    raise ValueError(f"unsupported syntax: {ast.dump(node)[:60]}")


@tool(
    tags=["math", "arithmetic"],
    read_only=True,
    idempotent=True,
    examples=[
        {"description": "Compound interest", "args": {"expression": "1000 * (1 + 0.05) ** 10"}, "result": 1628.89},
        {"description": "Hypotenuse", "args": {"expression": "sqrt(3**2 + 4**2)"}, "result": 5.0},
    ],
)
def calculate(expression: str, precision: int = 10) -> float:
    """Evaluate an arithmetic expression safely and return the number.

    Supports + - * / // % **, parentheses, the constants pi, e and tau, and the functions sqrt, abs, round,
    log, log10, exp, sin, cos, tan, floor, ceil, min and max.

    Args:
        expression: The expression, for example "2 * (3 + 4) / sqrt(16)".
        precision: Decimal places to round the result to.
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from exc
    return round(float(_evaluate(tree)), precision)


# --- units -------------------------------------------------------------------------------------

_UNITS: dict[str, tuple[str, float]] = {
    # length, in metres
    "mm": ("length", 0.001),
    "cm": ("length", 0.01),
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "in": ("length", 0.0254),
    "ft": ("length", 0.3048),
    "yd": ("length", 0.9144),
    "mi": ("length", 1609.344),
    "nmi": ("length", 1852.0),
    # mass, in kilograms
    "mg": ("mass", 1e-6),
    "g": ("mass", 0.001),
    "kg": ("mass", 1.0),
    "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125),
    "lb": ("mass", 0.45359237),
    # volume, in litres
    "ml": ("volume", 0.001),
    "l": ("volume", 1.0),
    "gal": ("volume", 3.785411784),
    "qt": ("volume", 0.946352946),
    "cup": ("volume", 0.2365882365),
    # time, in seconds
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    # data, in bytes
    "B": ("data", 1.0),
    "KB": ("data", 1e3),
    "MB": ("data", 1e6),
    "GB": ("data", 1e9),
    "KiB": ("data", 1024.0),
    "MiB": ("data", 1024.0**2),
    "GiB": ("data", 1024.0**3),
}
_TEMPERATURES = {"C", "F", "K"}
Unit = Literal[
    "mm", "cm", "m", "km", "in", "ft", "yd", "mi", "nmi",
    "mg", "g", "kg", "t", "oz", "lb",
    "ml", "l", "gal", "qt", "cup",
    "s", "min", "h", "day", "week",
    "B", "KB", "MB", "GB", "KiB", "MiB", "GiB",
    "C", "F", "K",
]  # fmt: skip


class Conversion(BaseModel):
    value: float
    from_unit: str
    to_unit: str
    result: float
    quantity: str


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"C": value - 273.15, "F": (value - 273.15) * 9 / 5 + 32, "K": value}[unit]


@tool(
    tags=["units", "conversion", "math"],
    read_only=True,
    idempotent=True,
    examples=[
        {"description": "Marathon in miles", "args": {"value": 42.195, "from_unit": "km", "to_unit": "mi"}},
        {"description": "Oven temperature", "args": {"value": 180, "from_unit": "C", "to_unit": "F"}},
    ],
)
def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> Conversion:
    """Convert a quantity between units of length, mass, volume, time, data size or temperature.

    Args:
        value: The quantity to convert.
        from_unit: The unit the value is in.
        to_unit: The unit to convert to; must measure the same kind of quantity.
    """
    if from_unit in _TEMPERATURES or to_unit in _TEMPERATURES:
        if not (from_unit in _TEMPERATURES and to_unit in _TEMPERATURES):
            raise ValueError(f"cannot convert between {from_unit} and {to_unit}: only C, F and K are temperatures")
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
        return Conversion(
            value=value, from_unit=from_unit, to_unit=to_unit, result=round(result, 6), quantity="temperature"
        )
    (kind_from, factor_from), (kind_to, factor_to) = _UNITS[from_unit], _UNITS[to_unit]
    if kind_from != kind_to:
        raise ValueError(f"cannot convert {kind_from} ({from_unit}) to {kind_to} ({to_unit})")
    result = value * factor_from / factor_to
    return Conversion(
        value=value, from_unit=from_unit, to_unit=to_unit, result=float(f"{result:.10g}"), quantity=kind_from
    )


# --- text --------------------------------------------------------------------------------------


class TextStatistics(BaseModel):
    characters: int
    characters_without_spaces: int
    words: int
    sentences: int
    lines: int
    paragraphs: int
    average_word_length: float
    reading_time_seconds: int = Field(description="At 230 words per minute.")
    most_common_words: list[tuple[str, int]]


@tool(tags=["text", "analysis"], read_only=True, idempotent=True)
def text_statistics(text: str, top_words: Annotated[int, Field(ge=0, le=50)] = 5) -> TextStatistics:
    """Count characters, words, sentences, lines and paragraphs of a text, with reading time and top words.

    Args:
        text: The text to analyse.
        top_words: How many of the most frequent words (3+ letters) to return.
    """
    words = re.findall(r"[\w']+", text)
    long_words = [w.lower() for w in words if len(w) >= 3]
    return TextStatistics(
        characters=len(text),
        characters_without_spaces=len(re.sub(r"\s", "", text)),
        words=len(words),
        sentences=len([s for s in re.split(r"[.!?]+", text) if s.strip()]),
        lines=len(text.splitlines()) if text else 0,
        paragraphs=len([p for p in re.split(r"\n\s*\n", text) if p.strip()]),
        average_word_length=round(sum(map(len, words)) / len(words), 2) if words else 0.0,
        reading_time_seconds=math.ceil(len(words) / 230 * 60),
        most_common_words=Counter(long_words).most_common(top_words),
    )


@tool(tags=["text", "url"], read_only=True, idempotent=True)
def slugify(text: str, separator: str = "-", max_length: int = 80) -> str:
    """Turn a title into a URL slug: ASCII, lower case, words joined by a separator.

    Args:
        text: The text to turn into a slug, for example an article title.
        separator: What joins the words.
        max_length: The longest slug to return; cut at a word boundary.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}{separator}{word}" if slug else word
        if len(candidate) > max_length:
            break
        slug = candidate
    return slug


class RegexMatch(BaseModel):
    match: str
    start: int
    end: int
    groups: list[str | None]


@tool(tags=["text", "regex", "search"], read_only=True, idempotent=True)
def regex_find(pattern: str, text: str, ignore_case: bool = False, max_matches: int = 100) -> list[RegexMatch]:
    """Find every match of a regular expression (Python syntax) in a text, with positions and groups.

    Args:
        pattern: The regular expression, for example "\\\\b[A-Z][a-z]+\\\\b".
        text: The text to search.
        ignore_case: Match letters regardless of case.
        max_matches: Stop after this many matches.
    """
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc
    out = []
    for m in compiled.finditer(text):
        out.append(RegexMatch(match=m.group(0), start=m.start(), end=m.end(), groups=list(m.groups())))
        if len(out) >= max_matches:
            break
    return out


# --- encoding and hashing ------------------------------------------------------------------------


@tool(tags=["hash", "security", "checksum"], read_only=True, idempotent=True)
def hash_text(
    text: str, algorithm: Literal["md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256"] = "sha256"
) -> str:
    """Compute the hex digest of a text (UTF-8) with a hash function, e.g. to make a checksum.

    Args:
        text: The text to hash.
        algorithm: The hash function.
    """
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


@tool(tags=["encoding", "base64", "url"], read_only=True, idempotent=True)
def encode_text(text: str, encoding: Literal["base64", "base64url", "hex", "url"] = "base64") -> str:
    """Encode a text as base64, URL-safe base64, hexadecimal or URL percent-encoding.

    Args:
        text: The text to encode (as UTF-8).
        encoding: The encoding to apply.
    """
    data = text.encode("utf-8")
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    if encoding == "base64url":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if encoding == "hex":
        return data.hex()
    return urllib.parse.quote(text, safe="")


@tool(tags=["encoding", "base64", "url"], read_only=True, idempotent=True)
def decode_text(text: str, encoding: Literal["base64", "base64url", "hex", "url"] = "base64") -> str:
    """Decode base64, URL-safe base64, hexadecimal or URL percent-encoding back to text.

    Args:
        text: The encoded text.
        encoding: The encoding it is in.
    """
    try:
        if encoding == "base64":
            data = base64.b64decode(text, validate=True)
        elif encoding == "base64url":
            data = base64.urlsafe_b64decode(text)
        elif encoding == "hex":
            data = bytes.fromhex(text)
        else:
            return urllib.parse.unquote(text)
        return data.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid {encoding}: {exc}") from exc


@tool(tags=["id", "random", "uuid"], read_only=True)
def generate_uuid(count: Annotated[int, Field(ge=1, le=100)] = 1, version: Literal[4, 7] = 4) -> list[str]:
    """Generate random UUIDs (version 4) or time-ordered ones (version 7).

    Args:
        count: How many UUIDs to generate.
        version: 4 for random, 7 for time-ordered (sortable by creation time).
    """
    make = uuid.uuid4 if version == 4 or not hasattr(uuid, "uuid7") else uuid.uuid7
    return [str(make()) for _ in range(count)]


# --- dates -------------------------------------------------------------------------------------


class DateDifference(BaseModel):
    days: int
    weeks: float
    business_days: int = Field(description="Monday to Friday, end date excluded.")
    months: int = Field(description="Whole calendar months.")
    years: int = Field(description="Whole years.")


@tool(
    tags=["date", "calendar", "time"],
    read_only=True,
    idempotent=True,
    examples=[{"description": "Days in 2024", "args": {"start": "2024-01-01", "end": "2025-01-01"}}],
)
def date_difference(start: date, end: date) -> DateDifference:
    """Count the days, weeks, business days, months and years between two dates (ISO format, YYYY-MM-DD).

    Args:
        start: The first date.
        end: The second date; may be before the first, giving negative numbers.
    """
    sign = 1 if end >= start else -1
    lo, hi = min(start, end), max(start, end)
    days = (hi - lo).days
    full_weeks, rest = divmod(days, 7)
    business = full_weeks * 5 + sum(1 for i in range(rest) if (lo + timedelta(days=i)).weekday() < 5)
    months = (hi.year - lo.year) * 12 + hi.month - lo.month - (1 if hi.day < lo.day else 0)
    return DateDifference(
        days=sign * days,
        weeks=round(sign * days / 7, 2),
        business_days=sign * business,
        months=sign * months,
        years=sign * (months // 12),
    )


@tool(tags=["date", "calendar", "time"], read_only=True, idempotent=True)
def add_to_date(start: date, days: int = 0, weeks: int = 0, months: int = 0, years: int = 0) -> date:
    """Add (or, with negative numbers, subtract) days, weeks, months and years to a date.

    Months and years keep the day of month where they can and clamp it otherwise (Jan 31 + 1 month = Feb 28/29).

    Args:
        start: The date to start from (YYYY-MM-DD).
        days: Days to add.
        weeks: Weeks to add.
        months: Calendar months to add.
        years: Years to add.
    """
    month_index = start.month - 1 + months + 12 * years
    year, month = start.year + month_index // 12, month_index % 12 + 1
    if not 1 <= year <= 9999:
        raise ValueError(f"the result would be in the year {year}, outside 1-9999")
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day) + timedelta(days=days, weeks=weeks)


# --- data --------------------------------------------------------------------------------------


def _step(value: Any, part: str, path: str) -> Any:
    if isinstance(value, list):
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            raise ValueError(f"'{part}' in '{path}' is not an index of a list of {len(value)} items") from None
    if isinstance(value, dict):
        if part not in value:
            keys = ", ".join(list(value)[:10])
            raise ValueError(f"no key '{part}' in '{path}'; keys there: {keys}")
        return value[part]
    raise ValueError(f"cannot look up '{part}' in '{path}': it is a {type(value).__name__}, not an object or list")


@tool(
    tags=["json", "data", "query"],
    read_only=True,
    idempotent=True,
    examples=[
        {
            "description": "Second item's name",
            "args": {"document": {"items": [{"name": "a"}, {"name": "b"}]}, "path": "items.1.name"},
            "result": "b",
        },
        {"description": "Every name", "args": {"document": {"items": [{"name": "a"}]}, "path": "items.*.name"}},
    ],
)
def json_query(document: dict[str, Any] | list[Any], path: str) -> Any:
    """Extract a value from a JSON document by a dotted path: "a.b.0.c"; "*" maps over every list item.

    Args:
        document: The JSON object or array to query.
        path: Dotted keys and list indexes, for example "users.0.email" or "users.*.email".
    """
    current: list[Any] = [document]
    fanned = False
    walked: list[str] = []
    for part in [p for p in path.split(".") if p]:
        where = ".".join(walked) or "(root)"
        if part == "*":
            if not all(isinstance(v, list) for v in current):
                raise ValueError(f"'*' in '{path}' needs a list at '{where}'")
            current = [item for v in current for item in v]
            fanned = True
        else:
            current = [_step(v, part, where) for v in current]
        walked.append(part)
    return current if fanned else current[0]


class NumberSummary(BaseModel):
    count: int
    sum: float
    mean: float
    median: float
    minimum: float
    maximum: float
    standard_deviation: float | None = Field(description="Sample standard deviation; null for fewer than 2 values.")
    quartiles: list[float] | None = Field(description="Q1, Q2, Q3; null for fewer than 2 values.")


@tool(tags=["math", "statistics", "data"], read_only=True, idempotent=True)
def summarize_numbers(values: Annotated[list[float], Field(min_length=1)]) -> NumberSummary:
    """Descriptive statistics of a list of numbers: count, sum, mean, median, min, max, standard deviation, quartiles.

    Args:
        values: The numbers to summarise.
    """
    many = len(values) >= 2
    return NumberSummary(
        count=len(values),
        sum=math.fsum(values),
        mean=statistics.fmean(values),
        median=statistics.median(values),
        minimum=min(values),
        maximum=max(values),
        standard_deviation=statistics.stdev(values) if many else None,
        quartiles=statistics.quantiles(values, n=4) if many else None,
    )
