"""A meta-tool's answer in the shape every surface sends, whatever its wire format: the JSON data, whether it
reports a failure, and (for `run_tool`) the tool's own result. Surfaces translate a `Reply` into their protocol
(MCP: a `CallToolResult`; A2A: artifacts and task states); the data and the error texts are decided here once.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aperture.execution import CallContext, RunResult
from aperture.gateway.metatools import Answer, offered_meta_tool, offered_meta_tools
from aperture.model import ApertureError, InternalError, UnknownToolError

if TYPE_CHECKING:
    from aperture.gateway.core import Gateway

logger = logging.getLogger(__name__)


def error_data(error: ApertureError) -> dict[str, Any]:
    """The structured form of a failure the caller can act on: `{"error": {code, message, ...}}`."""
    return {"error": error.to_dict()}


def run_data(result: RunResult) -> dict[str, Any]:
    """The structured form of a `run_tool` answer: `{tool_id, result, duration_ms}` (or its error)."""
    if result.error is not None:
        return error_data(result.error)
    data = {"tool_id": result.tool_id, "result": result.structured, "duration_ms": round(result.duration_ms, 3)}
    return {**data, **result.extra} if result.extra else data


def internal_failure(op: str, exc: BaseException) -> InternalError:
    """The error a caller gets for a bug in the gateway (logged by the surface boundary that caught it)."""
    return InternalError(
        f"Aperture hit an internal error in {op} ({type(exc).__name__}). This is a bug in the gateway, "
        "not in your request; retrying may not help.",
        op=op,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One meta-tool answer, ready for any surface.

    `data` is the JSON object to send; `run` the tool's own result for `run_tool` (its content blocks, which
    surfaces pass on unchanged); `error` the failure, when the answer is one.
    """

    data: dict[str, Any]
    is_error: bool = False
    run: RunResult | None = None
    error: ApertureError | None = None

    @classmethod
    def of(cls, answer: Answer) -> Reply:
        """The reply for what a meta-tool handler answered."""
        if isinstance(answer, RunResult):
            return cls(data=run_data(answer), is_error=answer.is_error, run=answer, error=answer.error)
        if isinstance(answer, dict):
            return cls(data=answer)
        return cls(data=answer.to_dict(), is_error=answer.is_error)

    @classmethod
    def failure(cls, error: ApertureError) -> Reply:
        """The reply for a failure: its message for people, its structure for programs."""
        return cls(data=error_data(error), is_error=True, error=error)

    @property
    def text(self) -> str:
        """The reply for people: the error's message, else compact JSON of the data."""
        if self.error is not None:
            return self.error.message
        return json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return self.data


async def call_meta_tool(gateway: Gateway, name: str, arguments: Mapping[str, Any] | None, call: CallContext) -> Reply:
    """Run the offered meta-tool `name` for the caller of `call`; every failure becomes a failed `Reply`.

    This is a surface boundary: an unexpected exception is logged and answered as an internal error.
    """
    meta = offered_meta_tool(gateway, name)
    try:
        if meta is None:
            names = [tool.name for tool in offered_meta_tools(gateway)]
            raise UnknownToolError(name, difflib.get_close_matches(name, names, n=3, cutoff=0.5) or names[:3])
        return Reply.of(await meta.call(gateway, call, arguments))
    except ApertureError as error:
        error.op = error.op or name
        return Reply.failure(error)
    except Exception as exc:  # the surface boundary: log it, answer with an internal error, keep serving
        logger.exception("meta-tool %s failed", name)
        return Reply.failure(internal_failure(name, exc))
