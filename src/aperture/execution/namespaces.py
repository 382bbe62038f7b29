"""Namespace text: what each backend's tools carry as `namespace_description`, the words search indexes with the
namespace.

A backend says what it is (an MCP server's title and instructions, an agent card's description, a capability
file's `info`); that text is cut to a bounded length and has the configured secrets taken out, and it is what
integrity pins. A `description` in the backend's configuration entry replaces it for search (after the check:
being the operator's own words, it is not pinned, and a change to it holds nothing back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from aperture.model import Redactor, Tool, namespace_text
from aperture.model.tool import NAMESPACE_DESCRIPTION_LIMIT


class NamespaceDescriptions:
    """Sets each tool's `namespace_description`: in two steps, around the integrity check.

    Args:
        configured: backend name -> the `description` its configuration entry gives.
        redactor: takes the configured secrets out of the text (a server's instructions may quote a key).
    """

    def __init__(self, configured: Mapping[str, str] | None = None, redactor: Redactor | None = None) -> None:
        self.configured = {name: text for name, text in (configured or {}).items() if text.strip()}
        self.redactor = redactor

    def said(self, tools: Iterable[Tool]) -> tuple[Tool, ...]:
        """The tools as their backend listed them, with what it says about itself bounded and redacted: the text the
        integrity check pins, also when the configuration's description is what gets searched (a server that
        rewrites its instructions is held either way; the operator's edits never are)."""
        cleaned: dict[str, str] = {}  # a backend's tools mostly share one text: clean it once
        out = []
        for tool in tools:
            text = tool.namespace_description
            if text not in cleaned:
                cleaned[text] = self._clean(text)
            out.append(_with(tool, cleaned[text]))
        return tuple(out)

    def served(self, tools: Mapping[str, Tool]) -> dict[str, Tool]:
        """`tools` (by id) as search and the catalog see them: with their backend's configured description, for
        those whose backend has one."""
        cleaned = {name: self._clean(text) for name, text in self.configured.items()}
        return {key: _with(tool, cleaned[tool.namespace]) if tool.namespace in cleaned else tool
                for key, tool in tools.items()}  # fmt: skip

    def _clean(self, text: str) -> str:
        if not text:
            return text
        # Redacted before it is cut, so that no cut leaves part of a secret; only the start can be kept anyway.
        text = " ".join(text[: 64 * NAMESPACE_DESCRIPTION_LIMIT].split())[: 4 * NAMESPACE_DESCRIPTION_LIMIT]
        if self.redactor is not None:
            text = self.redactor.text(text)
        return namespace_text(text)


def _with(tool: Tool, text: str) -> Tool:
    return tool if tool.namespace_description == text else replace(tool, namespace_description=text)
