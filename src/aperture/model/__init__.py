"""Foundation: tools, ids, docs, errors, argument validation and format adapters."""

from aperture.model.adapters import function_name, to_anthropic, to_mcp, to_openai
from aperture.model.docs import DetailLevel, ToolSummary, describe
from aperture.model.errors import (
    ApertureError,
    AuditUnavailableError,
    BackendUnavailableError,
    CancelledError,
    ConfigError,
    ErrorCode,
    ExecutionError,
    ForbiddenError,
    InputValidationError,
    InternalError,
    InvalidCursorError,
    InvalidRequestError,
    InvalidToolIdError,
    OutputValidationError,
    RateLimitedError,
    ToolHeldError,
    ToolTimeoutError,
    UnauthorizedError,
    UnknownToolError,
)
from aperture.model.ids import ToolId
from aperture.model.redact import RedactingFilter, Redactor, install_log_redaction
from aperture.model.tool import ParameterInfo, Tool, ToolAnnotations, ToolExample
from aperture.model.validation import ArgumentValidator, OutputValidator, Violation

__all__ = [
    "ApertureError",
    "ArgumentValidator",
    "AuditUnavailableError",
    "BackendUnavailableError",
    "CancelledError",
    "ConfigError",
    "DetailLevel",
    "ErrorCode",
    "ExecutionError",
    "ForbiddenError",
    "InputValidationError",
    "InternalError",
    "InvalidCursorError",
    "InvalidRequestError",
    "InvalidToolIdError",
    "OutputValidationError",
    "OutputValidator",
    "ParameterInfo",
    "RateLimitedError",
    "RedactingFilter",
    "Redactor",
    "Tool",
    "ToolAnnotations",
    "ToolExample",
    "ToolHeldError",
    "ToolId",
    "ToolSummary",
    "ToolTimeoutError",
    "UnauthorizedError",
    "UnknownToolError",
    "Violation",
    "describe",
    "function_name",
    "install_log_redaction",
    "to_anthropic",
    "to_mcp",
    "to_openai",
]
