"""The difference between two tool definitions, field by field and word by word, for the person who reviews a
held tool: a changed word deep inside a long description shows as that word, never as two long lines alike."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

CONTEXT_LINES = 3
"""Unchanged lines shown around each change; the rest of a long field is counted, not shown."""

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_Chunk = tuple[str, str] | str  # (old, new) for a change, the text itself where both agree
SpanKind = Literal["same", "removed", "added", "skipped"]


@dataclass(frozen=True, slots=True)
class DiffSpan:
    """A run of text in one line of a difference: in both versions (`same`), only the approved one
    (`removed`) or only the current one (`added`); `skipped` stands for unchanged lines left out."""

    text: str
    kind: SpanKind = "same"

    def plain(self) -> str:
        """The text with `git diff --word-diff` markers: `[-old-]`, `{+new+}`."""
        if self.kind == "removed":
            return f"[-{self.text}-]"
        if self.kind == "added":
            return f"{{+{self.text}+}}"
        return self.text


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field of a definition (`description`, `input_schema`, ...) as lines of spans: the whole of its
    changes, with up to `CONTEXT_LINES` unchanged lines around each."""

    field: str
    lines: tuple[tuple[DiffSpan, ...], ...]

    def plain(self) -> str:
        """The lines as text, changed words marked `[-old-]{+new+}` (for output without colours)."""
        return "\n".join("".join(span.plain() for span in line) for line in self.lines)


def definition_diff(approved: Mapping[str, Any], current: Mapping[str, Any]) -> list[FieldDiff]:
    """Each field that differs, in the order of `current` (strings as they are, other values as sorted JSON)."""
    fields = [*current, *(key for key in approved if key not in current)]
    return [
        FieldDiff(key, text_diff(_text(approved.get(key)), _text(current.get(key))))
        for key in fields
        if approved.get(key) != current.get(key)
    ]


def whole_definition(current: Mapping[str, Any]) -> list[FieldDiff]:
    """Every field with a value, unmarked: a new tool has nothing approved to compare with."""
    return [
        FieldDiff(key, tuple((DiffSpan(line),) for line in _text(value).splitlines()))
        for key, value in current.items()
        if value not in (None, "", {}, [])
    ]


def text_diff(before: str, after: str, context: int = CONTEXT_LINES) -> tuple[tuple[DiffSpan, ...], ...]:
    """The lines of `after` against `before`: changed lines word by word, far unchanged lines skipped."""
    old, new = before.splitlines(), after.splitlines()
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    lines: list[tuple[DiffSpan, ...]] = []
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            lines.extend(_around_changes(old[i1:i2], context, first=index == 0, last=index == len(opcodes) - 1))
        elif tag == "replace":
            lines.extend(_split_lines(word_diff("\n".join(old[i1:i2]), "\n".join(new[j1:j2]))))
        else:
            kind: SpanKind = "removed" if tag == "delete" else "added"
            lines.extend(_whole_line(line, kind) for line in (old[i1:i2] or new[j1:j2]))
    return tuple(lines)


def word_diff(before: str, after: str) -> list[DiffSpan]:
    """`after` against `before` word by word. Changes split only by spaces read as one: `[-a b-]{+c d+}`."""
    old, new = _TOKEN.findall(before), _TOKEN.findall(after)
    chunks: list[_Chunk] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            chunks.append("".join(old[i1:i2]))
        else:
            chunks.append(("".join(old[i1:i2]), "".join(new[j1:j2])))
    spans: list[DiffSpan] = []
    for chunk in _join_changes(chunks):
        if isinstance(chunk, str):
            spans.append(DiffSpan(chunk))
            continue
        removed, added = chunk
        if removed:
            spans.append(DiffSpan(removed, "removed"))
        if added:
            spans.append(DiffSpan(added, "added"))
    return spans


def _join_changes(chunks: Sequence[_Chunk]) -> list[_Chunk]:
    """Fold a blank run between two changes into both, so a changed phrase reads as one change."""
    joined: list[_Chunk] = []
    for chunk in chunks:
        if isinstance(chunk, tuple) and len(joined) >= 2:
            before, gap = joined[-2], joined[-1]
            if isinstance(before, tuple) and isinstance(gap, str) and gap.isspace() and "\n" not in gap:
                del joined[-2:]
                chunk = (before[0] + gap + chunk[0], before[1] + gap + chunk[1])
        joined.append(chunk)
    return joined


def _split_lines(spans: Iterable[DiffSpan]) -> list[tuple[DiffSpan, ...]]:
    """Spans that may hold line breaks, as lines of spans."""
    lines: list[list[DiffSpan]] = [[]]
    for span in spans:
        for n, part in enumerate(span.text.split("\n")):
            if n:
                lines.append([])
            if not part:
                continue
            if lines[-1] or span.kind == "same":
                lines[-1].append(DiffSpan(part, span.kind))
            else:
                lines[-1].extend(_whole_line(part, span.kind))
    return [tuple(line) for line in lines]


def _whole_line(line: str, kind: SpanKind) -> tuple[DiffSpan, ...]:
    """A line only one version has, marked after its indentation."""
    text = line.lstrip()
    indent = line[: len(line) - len(text)]
    return (DiffSpan(indent), DiffSpan(text, kind)) if indent else (DiffSpan(text, kind),)


def _around_changes(lines: Sequence[str], context: int, *, first: bool, last: bool) -> list[tuple[DiffSpan, ...]]:
    """Unchanged lines: those within `context` of a change, and a count of the rest."""
    head = 0 if first else context
    tail = 0 if last else context
    shown: list[tuple[DiffSpan, ...]] = [(DiffSpan(line),) for line in lines]
    if len(lines) <= head + tail + 1:
        return shown
    skipped = len(lines) - head - tail
    shown = shown[:head]
    shown.append((DiffSpan(f"… {skipped} unchanged line{'s' if skipped > 1 else ''}", "skipped"),))
    shown.extend((DiffSpan(line),) for line in lines[len(lines) - tail :])
    return shown


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
