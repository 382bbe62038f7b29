"""Resilience middleware: rate limits (token buckets), a circuit breaker per backend, a bulkhead per backend,
per-tool timeouts and retries with backoff and jitter for idempotent tools."""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio

from aperture.execution import Middleware, RunFn, RunResult, ToolCall
from aperture.model import BackendUnavailableError, ErrorCode, RateLimitedError, Tool
from aperture.ops.identity import Identity, identity_of
from aperture.ops.settings import ResilienceSettings, parse_rate
from aperture.ops.shared import BreakerStore, BucketStore, LocalBreakers, LocalBuckets

Resolve = Callable[[str], "tuple[Tool, str] | None"]
"""Tool id -> (tool, backend name), or None when the id names no tool (the runner then explains)."""

OnRefused = Callable[[str, str], None]
"""Told `(tool id, reason)` by a middleware that refuses a call, once per refusal (for the metrics)."""

BACKEND_FAILURES = frozenset({ErrorCode.TIMEOUT, ErrorCode.BACKEND_UNAVAILABLE, ErrorCode.EXECUTION_FAILED})
"""Outcomes that count against a backend's breaker; bad arguments or unknown tools say nothing about it."""


def first_match(globs: Any, tool_id: str) -> Any:
    """The value of the first glob (a mapping's key, or a list item) matching `tool_id`, or None."""
    for glob in globs:
        if fnmatch.fnmatchcase(tool_id, glob):
            return globs[glob] if isinstance(globs, dict) else glob
    return None


def describe_rate(text: str) -> str:
    """`'60/minute'` -> `'60 per minute'`."""
    count, per = parse_rate(text)
    unit = {1.0: "second", 60.0: "minute", 3600.0: "hour"}[per]
    return f"{count:g} per {unit}"


class _Bulkhead:
    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        self.slots = anyio.Semaphore(max_concurrent)
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.waiting = 0


class Resilience:
    """The resilience middleware's state; `wrap` is the middleware.

    Args:
        settings: the `ops.resilience` section.
        resolve: finds a call's tool and backend.
        buckets, breakers: in-process by default; Redis-backed ones for replicas.
        on_breaker: told `(backend, state)` whenever a breaker changes state (for metrics).
        on_refused: told `(tool id, reason)` for each call refused by a limit, a bulkhead or an open breaker.
    """

    def __init__(
        self,
        settings: ResilienceSettings,
        resolve: Resolve,
        *,
        buckets: BucketStore | None = None,
        breakers: BreakerStore | None = None,
        on_breaker: Callable[[str, str], None] | None = None,
        on_refused: OnRefused | None = None,
        local: Identity | None = None,
    ) -> None:
        self.settings = settings
        self.resolve = resolve
        self.buckets = buckets or LocalBuckets()
        self.breakers = breakers or LocalBreakers()
        self.on_breaker = on_breaker
        self.on_refused = on_refused
        self._local = local
        limits = settings.rate_limits
        self._global = (parse_rate(limits.global_), limits.global_) if limits.global_ else None
        self._per_identity = (parse_rate(limits.per_identity), limits.per_identity) if limits.per_identity else None
        self._bulkheads: dict[str, _Bulkhead] = {}
        self._per_tool: dict[str, tuple[float | None, bool, str | None]] = {}

    def wrap(self, inner: RunFn) -> RunFn:
        """The middleware: `Resilience(...).wrap` is a `Middleware`."""

        async def run(call: ToolCall) -> RunResult:
            found = self.resolve(call.tool_id) if isinstance(call.tool_id, str) else None
            if found is None:
                return await inner(call)
            tool, backend = found
            timeout, idempotent, tool_rate = self._tool_facts(tool)
            refused = await self._limit(call, tool, tool_rate)
            if refused is not None:
                return refused
            breaker = self.settings.breaker
            if breaker.enabled:
                wait = await self.breakers.check(backend, breaker.cooldown)
                if wait > 0:
                    return self._refuse(
                        call,
                        "breaker_open",
                        BackendUnavailableError(
                            f"Backend '{backend}' is unavailable (its circuit breaker is open after repeated "
                            f"failures); retry in {_seconds(wait)} s, or use a tool from another namespace.",
                            details={"backend": backend, "retry_after": _seconds(wait), "breaker": "open"},
                        ),
                    )
            if timeout is not None and call.ctx.timeout is None:
                call = replace(call, ctx=replace(call.ctx, timeout=timeout))
            bulkhead = self._bulkhead(backend)
            if bulkhead is None:
                result = await self._attempts(inner, call, idempotent)
            else:
                if bulkhead.slots.value == 0 and bulkhead.waiting >= bulkhead.max_queue:
                    return self._refuse(
                        call,
                        "bulkhead",
                        RateLimitedError(
                            f"Backend '{backend}' is busy: {bulkhead.max_concurrent} calls running and "
                            f"{bulkhead.waiting} waiting, the most it takes; retry in 1 s.",
                            details={"backend": backend, "retry_after": 1},
                        ),
                    )
                try:
                    bulkhead.slots.acquire_nowait()
                except anyio.WouldBlock:
                    bulkhead.waiting += 1
                    try:
                        await bulkhead.slots.acquire()
                    finally:
                        bulkhead.waiting -= 1
                try:
                    result = await self._attempts(inner, call, idempotent)
                finally:
                    bulkhead.slots.release()
            if breaker.enabled:
                await self._record(backend, result)
            return result

        return run

    async def _attempts(self, inner: RunFn, call: ToolCall, idempotent: bool) -> RunResult:
        retry = self.settings.retry
        attempts = retry.attempts if idempotent else 1
        for attempt in range(attempts):
            result = await inner(call)
            error = result.error
            if error is None or not error.retryable or attempt == attempts - 1:
                return result
            delay = min(retry.max_backoff, retry.backoff * 2**attempt)
            await anyio.sleep(delay / 2 + random.uniform(0, delay / 2))  # equal jitter: spread, never zero
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record(self, backend: str, result: RunResult) -> None:
        error = result.error
        if error is not None and error.code not in BACKEND_FAILURES:
            return
        if error is not None and error.details.get("breaker") == "open":
            return
        breaker = self.settings.breaker
        before = self.breakers.state(backend)
        after = await self.breakers.record(backend, error is None, breaker.failures, breaker.cooldown)
        if after != before and self.on_breaker is not None:
            self.on_breaker(backend, after)

    async def _limit(self, call: ToolCall, tool: Tool, tool_rate: str | None) -> RunResult | None:
        checks: list[tuple[str, str, str]] = []
        if self._global is not None:
            checks.append(("global", self._global[1], "all callers together"))
        if self._per_identity is not None:
            who = identity_of(call.ctx, self._local) if self._local else identity_of(call.ctx)
            checks.append((f"identity:{who.name}", self._per_identity[1], f"caller '{who.name}'"))
        if tool_rate is not None:
            checks.append((f"tool:{tool.key}", tool_rate, f"tool '{tool.key}'"))
        for key, rate, whom in checks:
            count, per = parse_rate(rate)
            wait = await self.buckets.take(key, count, per)
            if wait > 0:
                seconds = _seconds(wait)
                return self._refuse(
                    call,
                    "rate_limit",
                    RateLimitedError(
                        f"Rate limit: {describe_rate(rate)} for {whom}; retry in {seconds} s.",
                        details={"limit": rate, "scope": key, "retry_after": seconds},
                    ),
                )
        return None

    def _refuse(self, call: ToolCall, reason: str, error: Any) -> RunResult:
        if self.on_refused is not None:
            self.on_refused(call.tool_id, reason)
        return _failure(call, error)

    def _tool_facts(self, tool: Tool) -> tuple[float | None, bool, str | None]:
        facts = self._per_tool.get(tool.key)
        if facts is None:
            settings = self.settings
            annotations = tool.annotations
            idempotent = bool(annotations.idempotent or annotations.read_only) or (
                first_match(settings.idempotent, tool.key) is not None
            )
            facts = (
                first_match(settings.timeouts, tool.key),
                idempotent,
                first_match(settings.rate_limits.tools, tool.key),
            )
            self._per_tool[tool.key] = facts
        return facts

    def _bulkhead(self, backend: str) -> _Bulkhead | None:
        settings = self.settings.bulkhead
        if settings is None:
            return None
        found = self._bulkheads.get(backend)
        if found is None:
            found = self._bulkheads[backend] = _Bulkhead(settings.max_concurrent, settings.max_queue)
        return found

    def breaker_states(self, backends: list[str]) -> dict[str, str]:
        """The last known breaker state of each backend."""
        return {name: self.breakers.state(name) for name in backends}


def resilience_middleware(resilience: Resilience) -> Middleware:
    """The middleware of a `Resilience`."""
    return resilience.wrap


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def _failure(call: ToolCall, error: Any) -> RunResult:
    error.tool_id = call.tool_id
    error.op = "run_tool"
    return RunResult.failure(call.tool_id, error)
