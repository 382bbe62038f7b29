"""The `execution.code` section of the configuration: whether code mode is on, which runtime, who may use it,
and the limits of one execution."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aperture.execution.code.runtime import Limits, runtime_names


class CodeSettings(BaseModel):
    """Code mode (the execute_code meta-tool): off unless enabled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Offer execute_code.")
    runtime: str = Field(
        "bwrap",
        description="Where programs run: bwrap (CPython in bubblewrap) or wasm (Pyodide in Node, in bubblewrap).",
    )
    roles: list[str] = Field(
        default_factory=list,
        description="Only callers with one of these roles see and may call execute_code (empty: every caller).",
    )
    concurrency: int = Field(2, ge=1, le=64, description="Executions running at once; more wait their turn.")
    pool_size: int = Field(
        1,
        ge=0,
        le=16,
        description="wasm: interpreters kept loaded ahead of time (each runs one program and is then replaced), "
        "so an execution does not wait the seconds Pyodide takes to load; 0: every execution starts cold.",
    )
    timeout_ms: int = Field(10_000, ge=1, le=60_000, description="Default wall-clock limit of one execution.")
    max_tool_calls: int = Field(100, ge=1, le=1000, description="Default cap on one execution's tool calls.")
    memory_mb: int = Field(512, ge=64, description="Address space of the sandbox's interpreter, in MB.")
    file_mb: int = Field(16, ge=1, description="The sandbox's writable tmpfs (and its largest file), in MB.")
    max_output_bytes: int = Field(1024 * 1024, ge=1024, description="stdout and stderr each; past it, stopped.")
    max_bridge_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Bytes one execution's tool calls may move in all."
    )
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="The largest single tool call or answer.")

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        if value not in runtime_names():
            raise ValueError(f"no runtime {value!r}; choose one of: {', '.join(runtime_names())}")
        return value

    def limits(self, *, timeout_ms: int | None = None, max_tool_calls: int | None = None) -> Limits:
        """The limits of one execution: these settings, with a call's own timeout and call cap."""
        timeout = (timeout_ms or self.timeout_ms) / 1000
        return Limits(
            timeout=timeout,
            max_tool_calls=max_tool_calls or self.max_tool_calls,
            cpu_seconds=max(1, int(timeout) + 1),
            memory_bytes=self.memory_mb * 1024 * 1024,
            file_bytes=self.file_mb * 1024 * 1024,
            max_output_bytes=self.max_output_bytes,
            max_frame_bytes=self.max_frame_bytes,
            max_bridge_bytes=self.max_bridge_bytes,
        )
