"""Where a key stands in a YAML file: for load errors that name the line, without parsing the file again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


def line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The line (1-based) of the deepest key of `loc` found in the node tree `root` (the document's line when
    the first key is missing; None without a tree)."""
    if root is None:
        return None
    node: Any = root
    line: int | None = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
