"""The error family: every failure carries a code, a message for the model, and structured details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

_SHOWN_VALUE_LIMIT = 80


def shorten(text: str, limit: int = _SHOWN_VALUE_LIMIT) -> str:
    """Cut `text` to `limit` characters, saying how much was left out (a 10 kB id is not echoed back)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


class ErrorCode(StrEnum):
    """Stable machine-readable error codes, shared by every surface."""

    TOOL_NOT_FOUND = "tool_not_found"
    INVALID_TOOL_ID = "invalid_tool_id"
    INVALID_REQUEST = "invalid_request"
    INVALID_CURSOR = "invalid_cursor"
    VALIDATION_INPUT = "validation_input"
    VALIDATION_OUTPUT = "validation_output"
    EXECUTION_FAILED = "execution_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    TOOL_HELD = "tool_held"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    CONFIG = "config"
    INTERNAL = "internal"
    SHUTTING_DOWN = "shutting_down"
    CHAIN_STEP_FAILED = "chain_step_failed"


class ApertureError(Exception):
    """Root of all Aperture errors.

    Attributes:
        code: the stable error code.
        message: text that tells the reader (often a language model) what went wrong and what to do.
        retryable: whether the same call may succeed if retried unchanged.
        details: structured data for programs (violations, suggestions, ...).
        tool_id, op, backend_kind: where the error happened, filled in by whoever knows.
    """

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        tool_id: str | None = None,
        op: str | None = None,
        backend_kind: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.tool_id = tool_id
        self.op = op
        self.backend_kind = backend_kind
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        """The structured error as it appears in a tool result."""
        return {
            "code": str(self.code),
            "message": self.message,
            "tool_id": self.tool_id,
            "op": self.op,
            "backend_kind": self.backend_kind,
            "retryable": self.retryable,
            "details": self.details,
        }


class ConfigError(ApertureError):
    """The configuration (file or decorator use) is wrong; raised at startup."""

    code = ErrorCode.CONFIG


class InvalidToolIdError(ApertureError):
    """A tool id that cannot be parsed."""

    code = ErrorCode.INVALID_TOOL_ID

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(
            f"Invalid tool id {shorten(text)!r}: {reason}. Tool ids look like 'namespace:name' or "
            "'namespace:name:version', each part 1-128 characters from [A-Za-z0-9_.-]; "
            "use search_tools to find valid ids.",
            details={"reason": reason},
        )


class UnknownToolError(ApertureError):
    """No tool has this id; carries the closest existing ids."""

    code = ErrorCode.TOOL_NOT_FOUND

    def __init__(self, tool_id: str, closest: Sequence[str] = ()) -> None:
        hint = f" Did you mean: {', '.join(closest)}?" if closest else " Use search_tools to find a tool."
        if ":" not in tool_id and (not closest or any(":" in c for c in closest)):  # a bare name given for an id
            hint = f" Tool ids are 'namespace:name'.{hint}"
        super().__init__(f"No tool {shorten(tool_id)!r}.{hint}", details={"closest": list(closest)}, tool_id=tool_id)


class InvalidRequestError(ApertureError):
    """The arguments of a meta-tool (search_tools, run_tool, ...) are wrong."""

    code = ErrorCode.INVALID_REQUEST


class InvalidCursorError(ApertureError):
    """A pagination cursor that is malformed or refers to an index that has since changed."""

    code = ErrorCode.INVALID_CURSOR


class InputValidationError(ApertureError):
    """Arguments that do not match the tool's input schema (all problems reported at once)."""

    code = ErrorCode.VALIDATION_INPUT


class OutputValidationError(ApertureError):
    """A tool result that does not match the tool's output schema."""

    code = ErrorCode.VALIDATION_OUTPUT


class ExecutionError(ApertureError):
    """The tool itself failed."""

    code = ErrorCode.EXECUTION_FAILED


class ToolTimeoutError(ApertureError):
    """The tool did not answer within its time limit."""

    code = ErrorCode.TIMEOUT
    retryable = True


class CancelledError(ApertureError):
    """The caller cancelled the call."""

    code = ErrorCode.CANCELLED


class BackendUnavailableError(ApertureError):
    """The backend that owns the tool cannot be reached."""

    code = ErrorCode.BACKEND_UNAVAILABLE
    retryable = True


class ToolHeldError(ApertureError):
    """A tool whose definition changed since it was approved, held back until an operator approves it."""

    code = ErrorCode.TOOL_HELD


class UnauthorizedError(ApertureError):
    """The caller did not prove who it is (no credentials, or credentials that do not verify)."""

    code = ErrorCode.UNAUTHORIZED


class ForbiddenError(ApertureError):
    """The caller is known but its roles or scopes do not allow this tool."""

    code = ErrorCode.FORBIDDEN


class RateLimitedError(ApertureError):
    """A rate limit or a bulkhead refused the call; `details["retry_after"]` says when to try again."""

    code = ErrorCode.RATE_LIMITED
    retryable = True


class AuditUnavailableError(ApertureError):
    """The audit log cannot take a record (its sink is down and the local spool is full) and the operator
    asked for calls to be refused then (`ops.auth.audit_spool.on_full: refuse`)."""

    code = ErrorCode.AUDIT_UNAVAILABLE
    retryable = True


class InternalError(ApertureError):
    """A bug in Aperture: the message says so and the details help report it."""

    code = ErrorCode.INTERNAL


class ShuttingDownError(ApertureError):
    """The gateway is stopping (SIGTERM): it takes no new calls, and stopped this one after its grace period."""

    code = ErrorCode.SHUTTING_DOWN
    retryable = True


class ChainStepFailedError(ApertureError):
    """A step of a chain (`run_chain`) failed, so the chain stopped there; `step_index` (from 0) names the step
    and `details["cause_code"]` the code of the step's own error."""

    code = ErrorCode.CHAIN_STEP_FAILED

    def __init__(self, message: str, *, step_index: int, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, details=details, op="run_chain")
        self.step_index = step_index

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "step_index": self.step_index}
