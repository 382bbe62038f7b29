"""Foundation: tools, ids, docs, errors, argument validation and format adapters."""

from aperture.model.adapters import function_name, to_anthropic, to_mcp, to_openai
from aperture.model.docs import DetailLevel, ToolSummary, describe
from aperture.model.errors import (
    ApertureError,
    BackendUnavailableError,
    CancelledError,
    ConfigError,
    ErrorCode,
    ExecutionError,
    InputValidationError,
    InternalError,
    InvalidCursorError,
    InvalidRequestError,
    InvalidToolIdError,
    OutputValidationError,
    ToolHeldError,
    ToolTimeoutError,
    UnknownToolError,
)
from aperture.model.ids import ToolId
from aperture.model.tool import ParameterInfo, Tool, ToolAnnotations, ToolExample
from aperture.model.validation import ArgumentValidator, OutputValidator, Violation

__all__ = [
    "ApertureError",
    "ArgumentValidator",
    "BackendUnavailableError",
    "CancelledError",
    "ConfigError",
    "DetailLevel",
    "ErrorCode",
    "ExecutionError",
    "InputValidationError",
    "InternalError",
    "InvalidCursorError",
    "InvalidRequestError",
    "InvalidToolIdError",
    "OutputValidationError",
    "OutputValidator",
    "ParameterInfo",
    "Tool",
    "ToolAnnotations",
    "ToolExample",
    "ToolHeldError",
    "ToolId",
    "ToolSummary",
    "ToolTimeoutError",
    "UnknownToolError",
    "Violation",
    "describe",
    "function_name",
    "to_anthropic",
    "to_mcp",
    "to_openai",
]
