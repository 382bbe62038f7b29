"""Code mode's front: the configured runtime behind a concurrency cap, and what to say about it in health."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from aperture.execution.code.runtime import Limits, OnCall, Outcome, Runtime, runtime_named
from aperture.execution.code.settings import CodeSettings

logger = logging.getLogger(__name__)


class CodeExecutor:
    """Runs programs in the configured runtime, at most `settings.concurrency` at once."""

    def __init__(self, settings: CodeSettings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or runtime_named(settings.runtime, pool_size=settings.pool_size)
        self._slots = anyio.CapacityLimiter(settings.concurrency)
        self.problem = self.runtime.problem()
        if self.problem is not None:
            logger.error("code mode: the %s runtime is unavailable: %s", self.runtime.name, self.problem)
        else:
            logger.info("code mode: the %s runtime is ready", self.runtime.name)

    async def start(self) -> None:
        """Get the runtime ready for the default limits (a wasm pool loads in the background of the start)."""
        if self.problem is None:
            await self.runtime.warm(self.settings.limits())

    async def aclose(self) -> None:
        await self.runtime.aclose()

    async def run(self, code: str, limits: Limits, on_call: OnCall) -> Outcome:
        """Run `code` once a slot is free. The wait does not count against the program's time."""
        if self.problem is not None:
            return Outcome(
                error=f"Code execution is unavailable here: the configured {self.runtime.name} runtime cannot run "
                f"({self.problem}). Use run_tool or run_chain instead, and tell the operator."
            )
        async with self._slots:
            return await self.runtime.run(code, limits, on_call)

    def health(self) -> dict[str, Any]:
        """`{runtime, available, message?, running, waiting}` for /readyz."""
        row: dict[str, Any] = {
            "runtime": self.runtime.name,
            "available": self.problem is None,
            "running": self._slots.borrowed_tokens,
            "waiting": self._slots.statistics().tasks_waiting,
        }
        if self.problem is not None:
            row["message"] = self.problem
        return row
