"""Read a Google-style docstring: the description, and one description per parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?|Attributes):\s*$")
_PARAM = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True, slots=True)
class Docstring:
    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(text: str) -> Docstring:
    """Split a cleaned docstring (`inspect.getdoc`) into its description and its `Args:` entries."""
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in text.splitlines():
        header = _SECTION.match(line.strip())
        if header and not line.startswith(" "):
            section, current = header.group(1), None
            continue
        if section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            indent = len(line) - len(line.lstrip())
            match = _PARAM.match(line.strip())
            if match and (current is None or indent <= _indent_of_params(text)):
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current is not None:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return Docstring(description="\n".join(description).strip(), params=params)


def _indent_of_params(text: str) -> int:
    """The indentation of the first entry under `Args:` (continuation lines are indented deeper)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _SECTION.match(line.strip()) and line.strip().startswith(("Args", "Arguments", "Parameters")):
            for follow in lines[i + 1 :]:
                if follow.strip():
                    return len(follow) - len(follow.lstrip())
    return 0
