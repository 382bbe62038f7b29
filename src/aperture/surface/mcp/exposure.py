"""Which tools `tools/list` shows beside the meta-tools, and under which names.

`passthrough` lists every catalog tool under a flat name such as `time__get_current_time`; `surfaced`
lists a chosen few. A flat name depends only on the tool's id, so it never changes when other servers
are added: names that had to be altered to fit MCP (characters outside [A-Za-z0-9_-], more than 64
characters) get a short hash of the id, which also keeps two such names from colliding.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import mcp_types

from aperture.model import Tool, to_mcp

MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def plain_names(keys: Iterable[str], separator: str = "__") -> dict[str, str]:
    """Each id's bare name where it is unique and valid in MCP, else its flat (namespaced) name."""
    keys = list(keys)
    counts = Counter(key.partition(":")[2] for key in keys)
    out = {}
    for key in keys:
        name = key.partition(":")[2]
        valid = counts[name] == 1 and len(name) <= MAX_NAME and not _UNSAFE.search(name)
        out[key] = name if valid else flat_name(key, separator)
    return out


def flat_name(tool_key: str, separator: str = "__") -> str:
    """`namespace:name` as one MCP tool name, at most 64 characters, a function of the id alone."""
    namespace, _, name = tool_key.partition(":")
    plain = f"{namespace}{separator}{name}"
    safe = _UNSAFE.sub("_", plain)
    if safe == plain and len(safe) <= MAX_NAME:
        return safe
    digest = hashlib.sha256(tool_key.encode()).hexdigest()[:8]
    return f"{safe[: MAX_NAME - 9]}_{digest}"


@dataclass(frozen=True, slots=True)
class Exposure:
    """The tools listed directly (besides the meta-tools) for one catalog version, and their routes."""

    version: int
    listed: tuple[mcp_types.Tool, ...] = ()
    routes: dict[str, str] = field(default_factory=dict)  # exposed name -> tool key

    @classmethod
    def build(
        cls,
        tools: Iterable[Tool],
        *,
        version: int,
        passthrough: bool,
        surfaced: Sequence[str],
        separator: str,
        reserved: Iterable[str],
        namespaced: bool = True,
    ) -> Exposure:
        chosen = set(surfaced)
        taken = set(reserved)
        listed: list[mcp_types.Tool] = []
        routes: dict[str, str] = {}
        tools = [tool for tool in tools if passthrough or tool.key in chosen]
        plain = {} if namespaced else plain_names((t.key for t in tools), separator)
        for tool in tools:
            name = plain.get(tool.key) or flat_name(tool.key, separator)
            if name in taken:  # a meta-tool name, or a (vanishingly unlikely) hash collision
                name = flat_name(f"{tool.key}:", separator)
            taken.add(name)
            routes[name] = tool.key
            listed.append(to_mcp(tool, name=name))
        return cls(version=version, listed=tuple(listed), routes=routes)
