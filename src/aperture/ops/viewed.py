"""The toolset view around every run: a call names its tool as the caller's view does (a renamed tool by its
new id), and a tool outside the view is unknown, with a "did you mean" from the view, before any other layer
sees the call. Anything that runs tools through the gateway (run_tool, passthrough, run_chain, skill steps)
goes through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import mcp_types

from aperture.execution import RunFn, RunResult, ToolCall
from aperture.model import InvalidToolIdError, ToolId, UnknownToolError
from aperture.ops.access import Access


def in_view(inner: RunFn, access: Callable[[Any], Access], unknown: Callable[[str, Any], UnknownToolError]) -> RunFn:
    """`inner` behind the caller's toolset view.

    Args:
        access: the caller's `Access` for a call's context (`Ops.access`).
        unknown: the unknown-tool error for an id, suggesting what the caller of a context may see.
    """

    async def run(call: ToolCall) -> RunResult:
        view = access(call.ctx).view
        asked = call.tool_id
        if view is None or not isinstance(asked, str):
            return await inner(call)
        try:
            parsed = ToolId.parse(asked)
        except InvalidToolIdError:
            if not ToolId.is_bare_name(asked):
                return await inner(call)  # the runner explains the malformed id (it names no other tool)
            return _unknown(asked, unknown(asked, call.ctx))
        key = view.resolve(parsed.key)
        if key is None and (key := view.absent_key(parsed.key)) is not None:
            # Not in the catalog now, but the view's rules would hold it: the runner says why (its backend is
            # down, it is held for review); a plain miss is answered from the view, never the whole catalog.
            named = key if parsed.version is None else f"{key}:{parsed.version}"
            result = await inner(call if key == parsed.key else replace(call, tool_id=named))
            if isinstance(result.error, UnknownToolError):
                return _unknown(asked, unknown(asked, call.ctx))
            return result if key == parsed.key else _as_asked(result, key, parsed.key, asked)
        if key is None:
            return _unknown(asked, unknown(asked, call.ctx))
        if key == parsed.key:
            return await inner(call)
        result = await inner(replace(call, tool_id=key if parsed.version is None else f"{key}:{parsed.version}"))
        return _as_asked(result, key, parsed.key, asked)

    return run


def _unknown(asked: str, error: UnknownToolError) -> RunResult:
    error.op = "run_tool"
    return RunResult.failure(asked, error)


def _as_asked(result: RunResult, key: str, public: str, asked: str) -> RunResult:
    """The result of the catalog's tool `key`, as the caller knows it (`public`): its errors never name `key`."""
    error = result.error
    if error is None:
        return replace(result, tool_id=asked)
    error.message = error.message.replace(key, public)
    error.tool_id = asked
    content = tuple(
        mcp_types.TextContent(text=block.text.replace(key, public))
        if isinstance(block, mcp_types.TextContent)
        else block
        for block in result.content
    )
    return replace(result, tool_id=asked, content=content, error=error)
